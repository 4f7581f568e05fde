"""Ranker row sampling in lake mode: negative downsampling with weights, a row cap by user."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from homefeed.config import RankerConfig
from homefeed.models.pipeline import RankerExamples, sample_examples
from homefeed.models.ranker import Ranker


def examples(n: int = 20_000, users: int = 500, seed: int = 0) -> RankerExamples:
    rng = np.random.default_rng(seed)
    click = (rng.random(n) < 0.05).astype(np.int8)
    save = (rng.random(n) < 0.03).astype(np.int8)
    return RankerExamples(
        user_id=rng.integers(0, users, n).astype(np.int64),
        pin_id=rng.integers(0, 1000, n).astype(np.int64),
        time_ms=np.arange(n, dtype=np.int64),
        label_click=click,
        label_save=save,
        label_hide=np.zeros(n, dtype=np.int8),
    )


def test_every_labelled_row_is_kept_and_unlabelled_ones_at_the_rate():
    ex = examples()
    got = sample_examples(ex, RankerConfig(negative_rate=0.25, max_rows=None))
    kept = got.examples
    assert int(kept.labelled().sum()) == int(ex.labelled().sum())
    unlabelled = int((~ex.labelled()).sum())
    assert abs(int((~kept.labelled()).sum()) / unlabelled - 0.25) < 0.02
    np.testing.assert_array_equal(got.weights, np.where(kept.labelled(), 1.0, 4.0))
    # the weights stand for the unsampled rows
    assert abs(got.weights.sum() - len(ex)) / len(ex) < 0.03


def test_rate_one_and_no_cap_keep_everything():
    ex = examples(2000)
    got = sample_examples(ex, RankerConfig(negative_rate=1.0, max_rows=None))
    np.testing.assert_array_equal(got.examples.user_id, ex.user_id)
    assert np.all(got.weights == 1.0) and got.users_kept == got.users_total


def test_the_row_cap_keeps_whole_users():
    ex = examples()
    uncapped = sample_examples(ex, RankerConfig(negative_rate=0.5, max_rows=None)).examples
    got = sample_examples(ex, RankerConfig(negative_rate=0.5, max_rows=3000))
    assert 2500 < len(got.examples) <= 3000
    users = np.unique(got.examples.user_id)
    assert got.users_kept == len(users) < got.users_total
    # a kept user has exactly the rows negative sampling gave it
    for user in users[:20].tolist():
        assert (got.examples.user_id == user).sum() == (uncapped.user_id == user).sum()


def test_sampling_is_deterministic_for_a_seed():
    ex = examples()
    a = sample_examples(ex, RankerConfig(max_rows=2000, seed=3)).examples
    b = sample_examples(ex, RankerConfig(max_rows=2000, seed=3)).examples
    c = sample_examples(ex, RankerConfig(max_rows=2000, seed=4)).examples
    np.testing.assert_array_equal(a.time_ms, b.time_ms)
    assert not np.array_equal(a.time_ms, c.time_ms)


def test_weighted_downsampled_ranker_stays_calibrated():
    # He et al. 2014: train on downsampled negatives; the weights restore the probabilities.
    rng = np.random.default_rng(5)
    n = 60_000
    x = rng.normal(size=(n, 3)).astype(np.float32)
    p = 1.0 / (1.0 + np.exp(-(1.5 * x[:, 0] - 3.5)))
    y = (rng.random(n) < p).astype(np.int8)
    users = np.arange(n, dtype=np.int64)
    ex = RankerExamples(users, users, users, y, np.zeros(n, np.int8), np.zeros(n, np.int8))
    got = sample_examples(ex, RankerConfig(negative_rate=0.1, max_rows=None))
    rows = got.index
    np.testing.assert_array_equal(got.examples.time_ms, rows)
    config = RankerConfig(rounds=60, min_data_in_leaf=50, learning_rate=0.1)
    names = ("a", "b", "c")
    weighted = Ranker(config, names).fit(x[rows], {"click": y[rows]}, users[rows],
                                         weights=got.weights)  # fmt: skip
    unweighted = Ranker(config, names).fit(x[rows], {"click": y[rows]}, users[rows])
    fresh = rng.normal(size=(n, 3)).astype(np.float32)
    truth = float(np.mean(1.0 / (1.0 + np.exp(-(1.5 * fresh[:, 0] - 3.5)))))
    assert abs(weighted.predict(fresh)["click"].mean() / truth - 1) < 0.15
    assert unweighted.predict(fresh)["click"].mean() > 2 * truth  # what the weights correct


BAD_SETTINGS = [
    ("negative_rate", 0.0),
    ("negative_rate", 1.5),
    ("max_rows", 10),
    ("num_threads", 0),
]


@pytest.mark.parametrize(("field", "value"), BAD_SETTINGS)
def test_bad_sampling_settings_name_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        RankerConfig(**{field: value})
