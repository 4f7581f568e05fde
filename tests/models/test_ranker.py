"""The ranker: LightGBM heads learn, calibrate, skip what cannot be learned, round-trip."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest

from homefeed.config import RankerConfig
from homefeed.models.ranker import Calibration, Ranker, holdout_mask, isotonic_knots
from homefeed.models.ranker import auc as ranker_auc

NAMES = tuple(f"f{i}" for i in range(6))
SMALL = RankerConfig(rounds=80, min_data_in_leaf=20, learning_rate=0.1, num_leaves=15)


def auc(score: np.ndarray, y: np.ndarray) -> float:
    """Probability a random positive outranks a random negative (rank-sum form)."""
    ranks = np.argsort(np.argsort(score, kind="stable"), kind="stable") + 1.0
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows where click and save depend on feature 2 only; hide never happens."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(NAMES))).astype(np.float32)
    x[rng.random(n) < 0.05, 4] = np.nan  # missing values must be fine
    click = (x[:, 2] + 0.3 * rng.normal(size=n) > 0.8).astype(np.int8)
    save = (x[:, 2] + 0.3 * rng.normal(size=n) > 1.2).astype(np.int8)
    users = rng.integers(0, n // 10, n)
    return x, click, save, users


@pytest.fixture(scope="module")
def trained() -> Ranker:
    x, click, save, users = planted(6000, 1)
    hide = np.zeros(len(x), dtype=np.int8)
    return Ranker(SMALL, NAMES).fit(x, {"click": click, "save": save, "hide": hide}, users)


def test_learns_a_planted_signal_and_ranks_its_feature_first(trained):
    x, click, save, _ = planted(3000, 2)
    probs = trained.predict(x)
    assert auc(probs["click"], click) > 0.9
    assert auc(probs["save"], save) > 0.9
    for head in ("click", "save"):
        importance = trained.importance(head)
        assert max(importance, key=importance.__getitem__) == "f2"


def test_constant_heads_are_skipped_with_a_warning(caplog):
    x, click, _, users = planted(2000, 3)
    with caplog.at_level(logging.WARNING, logger="homefeed.models.ranker"):
        ranker = Ranker(SMALL, NAMES).fit(
            x, {"click": click, "hide": np.zeros(len(x)), "save": np.ones(len(x))}, users
        )
    assert ranker.heads == ("click",)
    assert set(ranker.skipped) == {"hide", "save"}
    assert "hide" in caplog.text and "save" in caplog.text
    rare = np.zeros(len(x))
    rare[:9] = 1  # nine positives: too few to learn from
    assert "hide" in Ranker(SMALL, NAMES).fit(x, {"hide": rare}, users).skipped
    probs = ranker.predict(x)
    assert set(probs) == {"click"}
    # skipped heads weigh 0: the score is the click weight times the click probability
    np.testing.assert_allclose(ranker.score(x), SMALL.head_weights["click"] * probs["click"])
    with pytest.raises(KeyError, match="hide"):
        ranker.importance("hide")


def test_score_is_the_weighted_sum_of_heads(trained):
    x, *_ = planted(500, 4)
    probs = trained.predict(x)
    assert "hide" not in probs and "hide" in trained.skipped
    w = SMALL.head_weights
    np.testing.assert_allclose(
        trained.score(x), w["click"] * probs["click"] + w["save"] * probs["save"]
    )


def test_save_load_gives_identical_predictions(trained, tmp_path):
    trained.save(tmp_path / "ranker")
    assert not list((tmp_path / "ranker").rglob("*.pkl"))
    loaded = Ranker.load(tmp_path / "ranker")
    x, *_ = planted(1000, 5)
    a, b = trained.predict(x), loaded.predict(x)
    assert a.keys() == b.keys()
    for head in a:
        assert np.array_equal(a[head], b[head])
    assert loaded.skipped == trained.skipped
    assert loaded.feature_names == NAMES


def test_isotonic_calibration_is_monotone_and_matches_observed_rates():
    rng = np.random.default_rng(6)
    raw = rng.normal(size=40_000) * 2
    true_p = 1 / (1 + np.exp(-(1.5 * raw - 2)))
    y = (rng.random(len(raw)) < true_p).astype(np.float64)
    cal = Calibration.fit("isotonic", raw, y)
    assert np.all(np.diff(cal.knots_y) >= 0)
    grid = np.linspace(-8, 8, 2001)
    assert np.all(np.diff(cal.apply(grid)) >= 0)
    pred = cal.apply(raw)
    deciles = np.quantile(raw, np.linspace(0, 1, 11))
    for lo, hi in itertools.pairwise(deciles):
        sel = (raw >= lo) & (raw < hi)
        assert abs(pred[sel].mean() - y[sel].mean()) < 0.02


def test_pool_adjacent_violators_pools_a_violation():
    x, y = isotonic_knots(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 1.0, 0.0, 1.0]))
    # the middle pair (1, 0) violates order and is pooled into one block of mean 0.5
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(x, [0.0, 1.5, 3.0])


def test_platt_recovers_a_logistic_curve():
    rng = np.random.default_rng(7)
    raw = rng.normal(size=50_000)
    y = (rng.random(len(raw)) < 1 / (1 + np.exp(-(2.0 * raw - 1.0)))).astype(np.float64)
    cal = Calibration.fit("platt", raw, y)
    assert cal.a == pytest.approx(2.0, abs=0.1)
    assert cal.b == pytest.approx(-1.0, abs=0.1)


def test_platt_config_is_used_by_the_ranker():
    x, click, _, users = planted(2000, 8)
    ranker = Ranker(SMALL.model_copy(update={"calibration": "platt"}), NAMES)
    ranker.fit(x, {"click": click}, users)
    assert ranker.calibrations["click"].kind == "platt"
    p = ranker.predict(x)["click"]
    assert np.all((p > 0) & (p < 1))


def test_holdout_is_by_user_and_deterministic():
    users = np.arange(10_000, dtype=np.int64)
    held = holdout_mask(users)
    assert 0.17 < held.mean() < 0.23
    assert np.array_equal(held, holdout_mask(users.copy()))
    repeated = np.repeat(users[:50], 3)
    assert np.array_equal(holdout_mask(repeated), np.repeat(held[:50], 3))


def test_training_is_deterministic():
    x, click, _, users = planted(2000, 9)
    a = Ranker(SMALL, NAMES).fit(x, {"click": click}, users).predict(x)["click"]
    b = Ranker(SMALL, NAMES).fit(x, {"click": click}, users).predict(x)["click"]
    assert np.array_equal(a, b)


def test_bad_input_names_the_field():
    x, click, _, users = planted(200, 10)
    with pytest.raises(ValueError, match="feature_names"):
        Ranker(SMALL, NAMES[:3]).fit(x, {"click": click}, users)
    with pytest.raises(ValueError, match="'like'"):
        Ranker(SMALL, NAMES).fit(x, {"like": click}, users)
    with pytest.raises(ValueError, match=r"labels\['click'\]"):
        Ranker(SMALL, NAMES).fit(x, {"click": click[:-1]}, users)
    with pytest.raises(ValueError, match="calibration"):
        Calibration.fit("sigmoid", np.zeros(3), np.zeros(3))


def test_auc_counts_ties_half_and_needs_both_classes():
    assert ranker_auc(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 1])) == 1.0
    assert ranker_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert ranker_auc(np.array([0.5, 0.7]), np.array([1, 1])) is None
    rng = np.random.default_rng(11)
    score, y = rng.random(500), (rng.random(500) < 0.3).astype(np.int8)
    assert ranker_auc(score, y) == pytest.approx(auc(score, y))


def test_report_records_held_out_quality(trained):
    report = trained.report["click"]
    assert report["early_stopping"] and report["holdout_rows"] > 0
    assert report["holdout_auc"] > 0.9
    assert 1 <= report["iterations"] <= SMALL.rounds
    assert "hide" not in trained.report


def test_weights_stand_for_rows_left_out_by_sampling():
    """Keep a quarter of the negatives with weight 4: probabilities stay those of all rows."""
    x, click, _, users = planted(12_000, 12)
    rng = np.random.default_rng(12)
    keep = (click == 1) | (rng.random(len(x)) < 0.25)
    weights = np.where(click[keep] == 1, 1.0, 4.0)
    ranker = Ranker(SMALL, NAMES).fit(x[keep], {"click": click[keep]}, users[keep], weights=weights)
    unweighted = Ranker(SMALL, NAMES).fit(x[keep], {"click": click[keep]}, users[keep])
    fresh, fresh_click, _, _ = planted(6000, 13)
    assert ranker.predict(fresh)["click"].mean() == pytest.approx(fresh_click.mean(), abs=0.02)
    # without the weights the sampled-up positive rate shows: probabilities are too high
    assert unweighted.predict(fresh)["click"].mean() > fresh_click.mean() + 0.05
