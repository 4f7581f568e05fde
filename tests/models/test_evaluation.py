"""The MovieLens protocol (split, loader, runner, CLI) on tiny generated data, and the holdout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from homefeed.cli.models_eval import eval_app
from homefeed.models.data import Action
from homefeed.models.evaluation.holdout import impression_labels, time_holdout
from homefeed.models.evaluation.movielens import (
    GENRES,
    Ease,
    MovieLensFormatError,
    Popularity,
    Split,
    evaluate,
    load_movielens,
    run_movielens,
    stratified_split,
    training_data,
)
from homefeed.testing.models import simulated_training_data

USERS, ITEMS = 50, 100


def write_movielens(directory: Path, seed: int = 3) -> Path:
    """A tiny ML-100K-format directory: 4 taste groups, each preferring its block of movies."""
    rng = np.random.default_rng(seed)
    lines = []
    for user in range(1, USERS + 1):
        block = (user - 1) % 4
        liked = np.arange(block * 25 + 1, block * 25 + 26)
        n = int(rng.integers(12, 30))
        items = np.unique(np.r_[rng.choice(liked, n - 4, replace=False),
                                rng.choice(np.arange(1, ITEMS + 1), 4, replace=False)])  # fmt: skip
        start = 875_000_000 + int(rng.integers(0, 10_000_000))
        for item in items:
            rating = int(rng.integers(3, 6)) if item in liked else int(rng.integers(1, 4))
            lines.append(f"{user}\t{item}\t{rating}\t{start + int(rng.integers(0, 86_400))}")
    (directory / "u.data").write_text("\n".join(lines) + "\n")
    items_text = []
    for item in range(1, ITEMS + 1):
        flags = ["0"] * len(GENRES)
        flags[1 + (item - 1) // 25] = "1"
        flags[8] = "1" if item % 3 == 0 else "0"
        fields = [str(item), f"Movie {item} (1995)", "01-Jan-1995", "", "http://x"]
        items_text.append("|".join(fields + flags))
    (directory / "u.item").write_text("\n".join(items_text) + "\n", encoding="latin-1")
    users = [f"{u}|30|M|other|00000" for u in range(1, USERS + 1)]
    (directory / "u.user").write_text("\n".join(users) + "\n")
    return directory


@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory) -> Path:
    return write_movielens(tmp_path_factory.mktemp("ml"))


def test_stratified_split_keeps_three_quarters_per_user_deterministically():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(40), rng.integers(1, 30, size=40))
    rng.shuffle(users)
    train, test = stratified_split(users, 0.75, seed=42)
    assert not np.any(train & test) and np.all(train | test)
    for u in np.unique(users):
        n = int((users == u).sum())
        assert int(train[users == u].sum()) == math.floor(0.75 * n + 1e-9)
    again, _ = stratified_split(users, 0.75, seed=42)
    other, _ = stratified_split(users, 0.75, seed=7)
    assert np.array_equal(train, again)
    assert not np.array_equal(train, other)


def test_stratified_split_is_recommenders_algorithm():
    # Their steps, one user at a time: draws in row order from np.random.seed(42), sort the
    # user's rows by draw, rank (i + 1) / n, train where rank <= ratio.
    users = np.array([3, 1, 3, 3, 1, 2, 3, 1, 1, 3, 2, 3])
    draws = np.random.RandomState(42).rand(len(users))
    want = np.zeros(len(users), dtype=bool)
    for u in np.unique(users):
        rows = np.flatnonzero(users == u)
        ordered = rows[np.argsort(draws[rows])]
        ranks = np.arange(1, len(rows) + 1) / len(rows)
        want[ordered[ranks <= 0.75]] = True
    assert np.array_equal(stratified_split(users, 0.75, 42)[0], want)


def test_bad_ratio_is_refused():
    with pytest.raises(ValueError, match="ratio"):
        stratified_split(np.array([1, 2]), 1.0)


def test_ratings_become_training_data(ml_dir):
    ratings, movies = load_movielens(ml_dir)
    data = training_data(ratings, movies)
    eng = data.engagements
    assert len(eng) == len(ratings)
    assert np.array_equal(eng.action == Action.SAVE, ratings.rating >= 4)
    assert set(np.unique(eng.action).tolist()) <= {int(Action.SAVE), int(Action.CLICK)}
    assert np.array_equal(np.unique(data.board_owner.src), np.unique(ratings.user_id))
    assert len(data.pin_boards) == int((ratings.rating >= 4).sum())
    assert data.pins.topics == GENRES and len(data.pins) == ITEMS
    first = data.pins.topic_codes[data.pins.topic_indptr[0] : data.pins.topic_indptr[1]]
    assert [GENRES[c] for c in first] == ["action"]
    assert data.pins.text is not None and data.pins.text[0] == "Movie 1 (1995)"


def test_malformed_files_are_named(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\tthree\t4\n")
    with pytest.raises(MovieLensFormatError, match=r"u\.data"):
        load_movielens(tmp_path)
    (tmp_path / "u.data").write_text("1\t2\t3\t4\n")
    with pytest.raises(MovieLensFormatError, match=r"u\.item"):
        load_movielens(tmp_path)


def test_runner_returns_every_row(ml_dir):
    results = run_movielens(ml_dir, k=10)
    names = [r.model for r in results]
    assert names[:5] == [
        "homefeed",
        "homefeed stack (tuning)",
        "EASE (l2=400)",
        "ALS (implicit)",
        "popularity",
    ]
    assert sum(r.published for r in results) == 3
    for r in results:
        assert r.error is None, r.error
        for value in (r.map, r.ndcg, r.precision, r.recall):
            assert 0.0 <= value <= 1.0
    by_name = {r.model: r for r in results}
    # the taste blocks are learnable: a collaborative model beats popularity
    assert by_name["EASE (l2=400)"].ndcg > by_name["popularity"].ndcg


def test_evaluate_excludes_training_items(ml_dir):
    ratings, movies = load_movielens(ml_dir)
    split = Split.of(ratings, movies)
    model = Ease(split.data, 50.0)
    recs = model.recommend(split.test_users(), 10, split.exclude())
    seen = split.exclude()
    for i, u in enumerate(recs.user_ids.tolist()):
        assert not set(recs.of(i)[0].tolist()) & set(seen[u].tolist())
    assert 0.0 < evaluate(model, split, 10)["ndcg"] <= 1.0


@pytest.fixture
def peers_only(monkeypatch):
    """The CLI with the cheap peers only: every model's own run is test_runner_returns_every_row."""
    from homefeed.models.evaluation import movielens

    monkeypatch.setattr(movielens, "default_models", lambda config=None: movielens.peer_models())


def test_cli_prints_table_and_json(ml_dir, peers_only):
    runner = CliRunner()
    out = runner.invoke(eval_app, ["movielens", str(ml_dir), "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert [r["model"] for r in rows] == [
        "EASE (l2=400)", "ALS (implicit)", "popularity",
        "BiVAE (published)", "BPR (published)", "SAR (published)",
    ]  # fmt: skip
    assert all(0.0 <= r["ndcg"] <= 1.0 for r in rows)
    table = runner.invoke(eval_app, ["movielens", str(ml_dir), "--k", "5"])
    assert table.exit_code == 0, table.output
    assert "NDCG@5" in table.output and "popularity" in table.output
    assert "published" not in table.output  # published rows are for k = 10 only


def test_cli_names_a_bad_directory(tmp_path):
    (tmp_path / "u.data").write_text("not a rating\n")
    out = CliRunner().invoke(eval_app, ["movielens", str(tmp_path)])
    assert out.exit_code == 2
    assert "u.data" in out.output


def test_time_holdout_on_simulated_data():
    data = simulated_training_data()
    result = time_holdout(data, Popularity, k=10)
    assert result.split_ms == data.as_of_ms - 86_400_000
    assert result.users > 0
    assert all(0.0 <= v <= 1.0 for v in result.ranking.values())
    assert 0.0 < result.coverage <= 1.0
    assert 0.0 <= result.diversity <= 1.0
    assert result.head_auc == {}  # popularity scores no pairs


def test_time_holdout_scores_heads_of_a_pair_scorer():
    data = simulated_training_data()
    model = Popularity  # recommends by popularity; heads scored by a pair scorer given here

    def scorer(fitted):
        pop = dict(zip(fitted.pins.ids.tolist(), fitted.popularity.tolist(), strict=True))

        def score(users, pins, times):
            s = np.array([pop.get(int(p), 0.0) for p in pins])
            return {"click": s, "save": s, "hide": -s}

        return score

    result = time_holdout(data, model, head_scorer=scorer)
    assert result.impressions > 0
    assert set(result.head_auc) == {"click", "save", "hide"}
    assert all(math.isnan(v) or 0.0 <= v <= 1.0 for v in result.head_auc.values())


def test_impression_labels_follow_actions():
    from homefeed.models.data import Engagements

    eng = Engagements(
        user_id=np.array([1, 1, 1, 2, 2]),
        pin_id=np.array([5, 5, 6, 5, 5]),
        action=np.array(
            [Action.IMPRESSION, Action.SAVE, Action.IMPRESSION, Action.IMPRESSION, Action.HIDE],
            dtype=np.int8,
        ),
        time_ms=np.arange(5),
    )
    users, pins, _, labels = impression_labels(eng)
    assert list(zip(users.tolist(), pins.tolist(), strict=True)) == [(1, 5), (1, 6), (2, 5)]
    assert labels["save"].tolist() == [True, False, False]
    assert labels["hide"].tolist() == [False, False, True]
    assert labels["click"].tolist() == [False, False, False]


def test_stacked_recommender_runs_and_excludes_seen(ml_dir):
    from homefeed.models.evaluation.tuning import StackedRecommender, StackParams, without

    ratings, movies = load_movielens(ml_dir)
    split = Split.of(ratings, movies)
    params = StackParams(candidates=30, label_folds=2, rounds=20, min_data_in_leaf=5)
    model = StackedRecommender.fit(split.data, params)
    users = np.r_[split.test_users(), 10_000]  # and one user nobody has seen
    recs = model.recommend(users, 10, split.exclude())
    seen = split.exclude()
    for i, u in enumerate(users.tolist()):
        pins, _ = recs.of(i)
        assert len(pins) == 10 and len(set(pins.tolist())) == 10
        assert not set(pins.tolist()) & set(seen.get(u, np.empty(0)).tolist())
    assert 0.0 < evaluate(model, split, 10)["ndcg"] <= 1.0
    # holding engagements out removes the saves they put on boards too
    held = np.zeros(len(split.data.engagements), dtype=bool)
    held[np.flatnonzero(split.data.engagements.action == Action.SAVE)[:5]] = True
    assert len(without(split.data, held).pin_boards) == len(split.data.pin_boards) - 5


def test_time_holdout_of_the_bundle_scores_every_head():
    from homefeed.models.evaluation.movielens import homefeed_model

    result = time_holdout(simulated_training_data(), homefeed_model(), k=10)
    assert result.impressions > 0 and result.users > 0
    assert set(result.head_auc) <= {"click", "save", "hide"} and "save" in result.head_auc
    assert all(math.isnan(v) or 0.0 <= v <= 1.0 for v in result.head_auc.values())
    # a trained ranker orders held-out impressions better than chance for saves
    assert result.head_auc["save"] > 0.5
    assert result.ranking["ndcg"] > 0.0


def test_eval_on_an_empty_lake_says_so(tmp_path, monkeypatch):
    from homefeed.cli.common import settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOMEFEED_LAKE_URI", str(tmp_path / "lake"))
    settings.config_path = None
    settings.reset()
    out = CliRunner().invoke(eval_app, ["--days", "3"])
    settings.reset()
    assert out.exit_code == 2, out.output
    assert "error" in out.output.lower()
