import numpy as np
import pytest

from homefeed.experiments import compare
from homefeed.experiments.stats import sample_ratio, summarize, welch


def test_mean_intervals_cover_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    true_mean = 0.7  # saves per user: skewed counts, like the real metric
    covered = [
        summarize(rng.poisson(rng.gamma(2.0, true_mean / 2.0, 400)), 0.95).ci.covers(true_mean)
        for _ in range(200)
    ]
    rate = np.mean(covered)
    assert 0.90 <= rate <= 0.99, rate


def test_difference_and_lift_intervals_cover_the_truth():
    rng = np.random.default_rng(2)
    mc, mt = 1.0, 1.1
    diff_hits, lift_hits = [], []
    for _ in range(200):
        c = rng.poisson(mc, 800)
        t = rng.poisson(mt, 700)  # unequal sizes and variances: what Welch is for
        effect = welch(t, c, 0.95)
        diff_hits.append(effect.diff_ci.covers(mt - mc))
        lift_hits.append(effect.lift_ci.covers(mt / mc - 1))
    assert np.mean(diff_hits) >= 0.90, np.mean(diff_hits)
    assert np.mean(lift_hits) >= 0.90, np.mean(lift_hits)


def test_a_real_effect_is_detected_and_no_effect_mostly_is_not():
    rng = np.random.default_rng(3)
    big = welch(rng.poisson(1.3, 5000), rng.poisson(1.0, 5000))
    assert big.p_value < 1e-6 and big.lift_ci.lo > 0.2
    null_p = [welch(rng.poisson(1.0, 500), rng.poisson(1.0, 500)).p_value for _ in range(200)]
    assert 0.01 <= np.mean(np.array(null_p) < 0.05) <= 0.10


def test_srm_flags_a_45_55_split_of_20k_users_and_not_a_fair_one():
    weights = {"control": 50.0, "treatment": 50.0}
    skewed = sample_ratio({"control": 9_000, "treatment": 11_000}, weights)
    assert skewed.mismatch and skewed.p_value < 1e-10
    rng = np.random.default_rng(4)
    fair_n = int(rng.binomial(20_000, 0.5))
    fair = sample_ratio({"control": fair_n, "treatment": 20_000 - fair_n}, weights)
    assert not fair.mismatch and fair.p_value > 0.001
    uneven = sample_ratio({"control": 2_000, "treatment": 18_000}, {"control": 1, "treatment": 9})
    assert not uneven.mismatch


def test_users_in_a_zero_weight_variant_are_a_mismatch():
    result = sample_ratio({"a": 500, "b": 500, "off": 3}, {"a": 1, "b": 1, "off": 0})
    assert result.mismatch


def test_compare_builds_a_report_from_in_memory_arrays():
    rng = np.random.default_rng(5)
    per_user = {
        v: {"saves": rng.poisson(m, n), "clicks": rng.poisson(2 * m, n)}
        for v, m, n in [("control", 1.0, 3000), ("treatment", 1.2, 3000)]
    }
    report = compare(per_user, weights={"control": 1, "treatment": 1})
    assert report.control == "control" and report.users == {"control": 3000, "treatment": 3000}
    assert set(report.summaries) == {"saves", "clicks"}
    saves = report.effects["saves"]["treatment"]
    assert saves.lift_ci.covers(0.2) and saves.p_value < 1e-6
    assert report.srm is not None and not report.srm.mismatch
    as_dict = report.to_dict()
    assert as_dict["summaries"]["saves"]["control"]["ci"]["lo"] < 1.0


def test_compare_refuses_bad_input_with_the_culprit_named():
    with pytest.raises(ValueError, match="at least two"):
        compare({"control": {"saves": np.ones(3)}})
    with pytest.raises(ValueError, match="'b' has no metric 'saves'"):
        compare({"a": {"saves": np.ones(3)}, "b": {"clicks": np.ones(3)}})
    with pytest.raises(ValueError, match="different users"):
        compare({"a": {"saves": np.ones(3), "clicks": np.ones(2)}, "b": {"saves": np.ones(3)}})
    with pytest.raises(ValueError, match="control 'z'"):
        compare({"a": {"saves": np.ones(3)}, "b": {"saves": np.ones(3)}}, control="z")


def test_empty_and_tiny_variants_give_nan_not_errors():
    report = compare({"a": {"saves": np.array([])}, "b": {"saves": np.array([1.0, 2.0, 3.0])}})
    assert np.isnan(report.summaries["saves"]["a"].mean)
    assert report.to_dict()["effects"]["saves"]["b"]["p_value"] is None
