import numpy as np

from homefeed.experiments.alerts import check_series, week_over_week


def series(rng, weeks: int, level: float, noise: float, last_week_level: float | None = None):
    values = rng.normal(level, noise, weeks * 7)
    if last_week_level is not None:
        values[-7:] = rng.normal(last_week_level, noise, 7)
    return values


def test_a_drop_beyond_normal_variation_alerts():
    rng = np.random.default_rng(0)
    result = week_over_week("saves", series(rng, 6, 1000, 30, 900), z=3, history_weeks=4)
    assert result is not None and result.alert
    assert 50 < result.drop < 150 and result.change < -0.03  # 100 +- 4 standard errors


def test_ordinary_noise_does_not_alert():
    rng = np.random.default_rng(1)
    alerts = [
        week_over_week("saves", series(rng, 6, 1000, 30), z=3, history_weeks=4) for _ in range(200)
    ]
    assert all(a is not None for a in alerts)
    assert sum(a.alert for a in alerts if a is not None) <= 4  # ~0.1% expected per check


def test_a_rise_never_alerts_and_the_threshold_scales_with_noise():
    rng = np.random.default_rng(2)
    rise = week_over_week("saves", series(rng, 5, 1000, 30, 1300), z=3, history_weeks=4)
    assert rise is not None and not rise.alert
    calm = week_over_week("saves", series(rng, 5, 1000, 5, 980), z=3, history_weeks=4)
    noisy = week_over_week("saves", series(rng, 5, 1000, 80, 980), z=3, history_weeks=4)
    assert calm is not None and noisy is not None
    assert calm.alert and not noisy.alert


def test_short_and_empty_series_are_skipped():
    assert week_over_week("x", np.ones(13), z=3, history_weeks=4) is None
    nan_week = np.concatenate([np.ones(7), np.full(7, np.nan)])
    assert week_over_week("x", nan_week, z=3, history_weeks=4) is None


def test_nan_days_are_left_out():
    rng = np.random.default_rng(3)
    values = series(rng, 4, 0.05, 0.002, 0.03)
    values[[3, 10, 25]] = np.nan
    result = week_over_week("save_rate", values, z=3, history_weeks=2)
    assert result is not None and result.alert and np.isfinite(result.this_week)


def test_check_series_watches_only_the_listed_metrics_with_data():
    rng = np.random.default_rng(4)
    data = {"saves": series(rng, 3, 100, 3, 50), "clicks": series(rng, 1, 100, 3)}
    results = check_series(data, ["saves", "clicks", "hides"], z=3, history_weeks=4)
    assert [r.metric for r in results] == ["saves"] and results[0].alert
