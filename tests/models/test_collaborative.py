"""ALS and item-item sources: interaction matrix, taste clusters, EASE, sparse path, score()."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from homefeed.models.data import Action, Edges, Engagements, Follows, Pins, TrainingData
from homefeed.models.sources.base import NO_PIN, CandidateSource
from homefeed.models.sources.collaborative import (
    AlsSource,
    ItemItemSource,
    cosine_neighbours,
    ease_weights,
    interaction_matrix,
)
from homefeed.testing.models import simulated_training_data

DAY_MS = 86_400_000
AS_OF = 100 * DAY_MS


def pins_catalogue(pin_ids: np.ndarray) -> Pins:
    pin_ids = np.unique(np.asarray(pin_ids, dtype=np.int64))
    n = len(pin_ids)
    return Pins(
        pin_id=pin_ids,
        creator_id=np.full(n, -1, dtype=np.int64),
        created_ms=np.zeros(n, dtype=np.int64),
        topic_indptr=np.zeros(n + 1, dtype=np.int64),
        topic_codes=np.empty(0, dtype=np.int32),
        topics=(),
    )


def training_data(
    users: list[int],
    pins: list[int],
    actions: list[int],
    times_ms: list[int] | None = None,
    pin_boards: tuple[list[int], list[int], list[float]] | None = None,
    catalogue: np.ndarray | None = None,
) -> TrainingData:
    """TrainingData from parallel engagement lists (and optional pin -> board edges)."""
    times = times_ms if times_ms is not None else [AS_OF - DAY_MS] * len(users)
    src, dst, weight = pin_boards or ([], [], [])
    empty = np.empty(0, dtype=np.int64)
    return TrainingData(
        engagements=Engagements(
            np.array(users, dtype=np.int64),
            np.array(pins, dtype=np.int64),
            np.array(actions, dtype=np.int8),
            np.array(times, dtype=np.int64),
        ),
        pins=pins_catalogue(np.asarray(pins) if catalogue is None else catalogue),
        pin_boards=Edges(
            np.array(src, dtype=np.int64),
            np.array(dst, dtype=np.int64),
            np.array(weight, dtype=np.float32),
        ),
        board_owner=Edges(empty, empty, np.empty(0, dtype=np.float32)),
        follows=Follows(empty, np.empty(0, dtype=np.int8), empty),
        as_of_ms=AS_OF,
    )


def two_clusters(per_user: int = 12, seed: int = 3) -> TrainingData:
    """Users 1-20 engage pins 1-30, users 21-40 pins 31-60 (``per_user`` pins each).

    Every user also has a hidden pin and impressions of the other cluster, which must not
    count as taste. Each user's pins form a board too, so graph sources see the clusters.
    """
    rng = np.random.default_rng(seed)
    users, pins, actions, times = [], [], [], []
    for user in range(1, 41):
        own = np.arange(1, 31) if user <= 20 else np.arange(31, 61)
        other = np.arange(31, 61) if user <= 20 else np.arange(1, 31)
        liked = rng.choice(own, per_user, replace=False)
        for pin in liked.tolist():
            users.append(user)
            pins.append(pin)
            actions.append(int(rng.choice([Action.CLICK, Action.SAVE])))
            times.append(AS_OF - int(rng.integers(1, 30)) * DAY_MS)
        for pin in rng.choice(other, 5, replace=False).tolist():
            users.append(user)
            pins.append(pin)
            actions.append(int(Action.IMPRESSION))
            times.append(AS_OF - DAY_MS)
    boards = ([], [], [])
    for pin in range(1, 61):  # two topical boards per cluster
        boards[0].append(pin)
        boards[1].append(1000 + (pin - 1) // 15)
        boards[2].append(1.0)
    return training_data(users, pins, actions, times, boards, np.arange(1, 61))


def pin_cluster(pin: int) -> int:
    return 0 if pin <= 30 else 1


def engaged(data: TrainingData, user: int) -> set[int]:
    eng = data.engagements
    mask = (eng.user_id == user) & (eng.action != Action.IMPRESSION)
    return set(eng.pin_id[mask].tolist())


def in_cluster_unseen_share(source: CandidateSource, data: TrainingData, k: int = 5) -> float:
    """Share of the top-k candidates that are unseen pins of the user's own cluster."""
    users = np.arange(1, 41)
    got = source.retrieve(users, k)
    good = total = 0
    for row, user in enumerate(users.tolist()):
        pins = got.of(row)[0].tolist()
        assert len(pins) == k, f"user {user} got {pins}"
        seen = engaged(data, user)
        good += sum(pin_cluster(p) == (user > 20) and p not in seen for p in pins)
        total += len(pins)
    return good / total


SOURCES = {
    "als": lambda: AlsSource(),
    "ease": lambda: ItemItemSource(),
    "cosine": lambda: ItemItemSource(dense_max_items=0),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_sources_recommend_unseen_pins_of_the_users_cluster(name):
    data = two_clusters()
    source = SOURCES[name]()
    source.fit(data)
    assert in_cluster_unseen_share(source, data) == 1.0


def test_interaction_matrix_sums_weights_and_drops_non_positives():
    data = training_data(
        users=[1, 1, 1, 1, 1, 2, 2],
        pins=[10, 10, 11, 12, 12, 10, 13],
        actions=[Action.CLICK, Action.SAVE, Action.IMPRESSION, Action.CLICK, Action.HIDE,
                 Action.CLOSEUP, Action.CREATE],
    )  # fmt: skip
    inter = interaction_matrix(data)
    assert inter.users.ids.tolist() == [1, 2]
    assert inter.pins.ids.tolist() == [10, 13]  # 11: impression only; 12: click + hide < 0
    assert inter.matrix.dtype == np.float32
    np.testing.assert_allclose(inter.matrix.toarray(), [[4.0, 0.0], [0.5, 2.0]])
    np.testing.assert_allclose(
        interaction_matrix(data, log_scale=True).matrix.toarray(),
        np.log1p([[4.0, 0.0], [0.5, 2.0]]),
    )
    assert interaction_matrix(data, binarize=True).matrix.toarray().tolist() == [[1, 0], [1, 1]]


def test_interaction_matrix_decays_old_engagement_by_half_life():
    data = training_data(
        users=[1, 1],
        pins=[10, 11],
        actions=[Action.SAVE, Action.SAVE],
        times_ms=[AS_OF, AS_OF - 10 * DAY_MS],
    )
    got = interaction_matrix(data, half_life_days=5.0).matrix.toarray()
    np.testing.assert_allclose(got, [[3.0, 0.75]], rtol=1e-6)
    with pytest.raises(ValueError, match="half_life_days"):
        interaction_matrix(data, half_life_days=0)


def test_interaction_matrix_keeps_only_catalogue_pins():
    data = training_data([1, 1], [10, 99], [Action.SAVE, Action.SAVE], catalogue=np.array([10]))
    assert interaction_matrix(data).pins.ids.tolist() == [10]


def test_ease_matches_a_direct_numpy_solve():
    rng = np.random.default_rng(0)
    x = (rng.random((40, 12)) < 0.3).astype(np.float32)
    l2 = 7.0
    p = np.linalg.inv(x.T.astype(np.float64) @ x + l2 * np.eye(12))
    expected = np.eye(12) - p / np.diag(p)[None, :]
    got = ease_weights(sp.csr_matrix(x), l2)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.all(np.diag(got) == 0)


def test_ease_solves_each_pin_as_a_ridge_regression_on_the_others():
    rng = np.random.default_rng(1)
    x = (rng.random((30, 8)) < 0.4).astype(np.float64)
    b = ease_weights(sp.csr_matrix(x), 3.0).astype(np.float64)
    # Steck 2019: B minimises ||X - XB||^2 + l2 ||B||^2 subject to diag(B) = 0.
    j = 5
    others = [i for i in range(8) if i != j]
    a = x[:, others]
    ridge = np.linalg.solve(a.T @ a + 3.0 * np.eye(7), a.T @ x[:, j])
    np.testing.assert_allclose(b[others, j], ridge, atol=1e-5)


def test_cosine_neighbours_keep_the_top_similar_pins():
    x = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float32))
    sims = cosine_neighbours(x, neighbours=1).toarray()
    assert (sims > 0).sum(axis=1).tolist() == [1, 1, 1, 1]
    assert np.argmax(sims[0]) == 1 and np.argmax(sims[3]) == 2
    np.testing.assert_allclose(sims[0, 1], 1.0, rtol=1e-6)  # pins 0 and 1: same users


def test_sparse_item_item_agrees_with_ease_on_top_items():
    # Under strong l2 EASE approaches co-counts, so the co-count neighbourhood (power 0) is the
    # sparse path's like-for-like; cosine (the default) re-weights towards rarer pins.
    data = simulated_training_data()
    dense = ItemItemSource()
    sparse = ItemItemSource(dense_max_items=0, neighbours=300, power=0.0)
    dense.fit(data)
    sparse.fit(data)
    assert dense.dense and not sparse.dense
    users, counts = np.unique(data.positives().user_id, return_counts=True)
    users = users[counts >= 5]
    a, b = dense.retrieve(users, 20), sparse.retrieve(users, 20)
    overlap = [
        len(set(a.of(i)[0].tolist()) & set(b.of(i)[0].tolist())) / 20 for i in range(len(users))
    ]
    assert np.mean(np.array(overlap) >= 0.25) >= 0.8, np.mean(overlap)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_score_matches_retrieved_scores_and_is_zero_for_unknowns(name):
    data = two_clusters()
    source = SOURCES[name]()
    source.fit(data)
    assert isinstance(source, AlsSource | ItemItemSource)
    got = source.retrieve(np.array([3, 27]), 8)
    users = np.repeat(got.user_ids, 8)
    scored = source.score(users, got.pins.ravel())
    np.testing.assert_allclose(scored, got.scores.ravel(), rtol=1e-4, atol=1e-6)
    unknown = source.score(np.array([3, -1, 999]), np.array([12345, 5, 5]))
    assert unknown.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="shape"):
        source.score(np.array([1, 2]), np.array([1]))


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_seen_pins_come_back_only_when_asked(name):
    data = two_clusters()
    source = SOURCES[name]()
    source.fit(data)
    twin = type(source)(**(source.params() | {"exclude_seen": False}))
    twin.fit(data)
    seen = engaged(data, 3)
    assert not set(source.retrieve(np.array([3]), 30).of(0)[0].tolist()) & seen
    assert set(twin.retrieve(np.array([3]), 30).of(0)[0].tolist()) & seen


def test_unknown_users_get_nothing_and_known_ones_keep_their_row():
    data = two_clusters()
    source = ItemItemSource()
    source.fit(data)
    got = source.retrieve(np.array([-5, 3, 10**12]), 5)
    assert got.user_ids.tolist() == [-5, 3, 10**12]
    assert np.all(got.pins[[0, 2]] == NO_PIN) and np.all(got.pins[1] != NO_PIN)


def test_fitting_on_no_positives_gives_empty_candidates():
    data = training_data([1, 2], [10, 11], [Action.IMPRESSION, Action.HIDE])
    for source in (AlsSource(), ItemItemSource(), ItemItemSource(dense_max_items=0)):
        source.fit(data)
        assert np.all(source.retrieve(np.array([1, 2]), 5).pins == NO_PIN)


@pytest.mark.parametrize(
    ("cls", "params", "field"),
    [
        (AlsSource, {"factors": 0}, "factors"),
        (AlsSource, {"alpha": -1.0}, "alpha"),
        (AlsSource, {"regularization": -0.1}, "regularization"),
        (ItemItemSource, {"l2": 0}, "l2"),
        (ItemItemSource, {"neighbours": 0}, "neighbours"),
        (ItemItemSource, {"dense_max_items": -1}, "dense_max_items"),
        (ItemItemSource, {"power": 2}, "power"),
    ],
)
def test_bad_parameters_are_refused_by_name(cls, params, field):
    with pytest.raises(ValueError, match=field):
        cls(**params)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_k_zero_gives_empty_rows_and_negative_k_is_refused(name):
    source = SOURCES[name]()
    source.fit(two_clusters())
    assert source.retrieve(np.array([3, 4]), 0).pins.shape == (2, 0)
    with pytest.raises(ValueError, match="k must be"):
        source.retrieve(np.array([3]), -1)


def test_cosine_neighbours_match_a_dense_top_k():
    rng = np.random.default_rng(4)
    x = sp.csr_matrix((rng.random((60, 40)) < 0.15) * rng.random((60, 40)), dtype=np.float32)
    got = cosine_neighbours(x, neighbours=5, block=7).toarray()
    dense = x.toarray().astype(np.float64)
    norms = np.linalg.norm(dense, axis=0)
    sims = (dense.T @ dense) / np.outer(norms, norms).clip(1e-12)
    np.fill_diagonal(sims, 0.0)
    for pin in range(40):
        want = np.sort(sims[pin][sims[pin] > 0])[::-1][:5]
        np.testing.assert_allclose(np.sort(got[pin][got[pin] > 0])[::-1], want, rtol=1e-5)


def test_cosine_neighbour_ties_keep_the_lower_pin():
    # pin 0 is equally similar to pins 1, 2 and 3 (one shared user each)
    x = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]], dtype=np.float32))
    sims = cosine_neighbours(x, neighbours=2).toarray()
    assert np.flatnonzero(sims[0]).tolist() == [1, 2]


def test_item_item_fits_on_each_users_latest_pins_only():
    # user 1 engaged pins 1..6 over six days; with max_user_pins=3 only 4, 5, 6 pair up
    users = [1] * 6 + [2, 2]
    pins = [1, 2, 3, 4, 5, 6, 1, 2]
    times = [AS_OF - (7 - d) * DAY_MS for d in range(1, 7)] + [AS_OF - DAY_MS] * 2
    data = training_data(users, pins, [Action.SAVE] * 8, times)
    capped = ItemItemSource(dense_max_items=0, max_user_pins=3)
    capped.fit(data)
    b = capped.weights.toarray()
    pin = {p: i for i, p in enumerate(capped._pins.ids.tolist())}
    assert b[pin[4], pin[5]] > 0 and b[pin[5], pin[6]] > 0
    assert b[pin[1], pin[4]] == 0 and b[pin[3], pin[6]] == 0  # user 1's older pins left out
    assert b[pin[1], pin[2]] > 0  # user 2 (two pins) is under the cap
    full = ItemItemSource(dense_max_items=0, max_user_pins=None)
    full.fit(data)
    assert full.weights.toarray()[pin[1], pin[4]] > 0
    # scoring still reads all of a user's pins: pin 2 is reached only through user 1's pin 1
    assert capped.score(np.array([1]), np.array([2]))[0] > 0


def test_item_item_rejects_a_bad_max_user_pins():
    with pytest.raises(ValueError, match="max_user_pins"):
        ItemItemSource(max_user_pins=0)
