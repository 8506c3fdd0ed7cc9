"""The volume models and error measures on series whose answer is known (pure: no database)."""

from __future__ import annotations

import math
import random
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasting.forecast import series
from forecasting.forecast.history import WEEKLY, demo_days

PATTERN = [10.0, 0.0, 5.0, 20.0, 15.0, 30.0, 40.0]


def seasonal_trend(days: int, *, noise: float = 0.0, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [200 + 0.5 * t + PATTERN[t % 7] + rng.gauss(0, noise) for t in range(days)]


def test_seasonal_naive_repeats_last_week_and_widens_its_interval_each_week():
    values = seasonal_trend(21, noise=3)
    result = series.forecast_volume(values, 14, model="seasonal_naive")
    assert result.model == "seasonal_naive"
    assert result.mean == [round(v, 3) for v in values[-7:] * 2]
    first, second = result.upper[0] - result.mean[0], result.upper[7] - result.mean[7]
    assert second == pytest.approx(first * math.sqrt(2), rel=1e-3)


def test_holt_winters_recovers_trend_and_weekly_season_of_a_clean_series():
    values = seasonal_trend(140)
    truth = seasonal_trend(154)[140:]
    result = series.forecast_volume(values, 14)
    assert result.model == "holt_winters"
    for predicted, actual in zip(result.mean, truth, strict=True):
        assert predicted == pytest.approx(actual, rel=0.03)


def test_holt_winters_interval_covers_about_its_share_of_noisy_outcomes():
    values = seasonal_trend(224, noise=8, seed=3)
    truth = seasonal_trend(252, noise=8, seed=3)[224:]
    result = series.forecast_volume(values, 28, interval=0.8)
    inside = sum(lo <= t <= up for lo, t, up in zip(result.lower, truth, result.upper, strict=True))
    assert 17 <= inside <= 28  # 80 % of 28 is 22.4
    assert all(lo <= m <= up for lo, m, up in zip(result.lower, result.mean, result.upper, strict=True))


def test_auto_falls_back_to_seasonal_naive_when_history_is_short_and_to_the_mean_below_a_week():
    assert series.forecast_volume(seasonal_trend(27), 7).model == "seasonal_naive"
    assert series.forecast_volume(seasonal_trend(28), 7).model == "holt_winters"
    short = series.forecast_volume([10, 20, 30], 3)
    assert short.model == "mean" and short.mean == [20.0, 20.0, 20.0]
    with pytest.raises(series.SeriesError, match="at least 28 days"):
        series.forecast_volume(seasonal_trend(20), 7, model="holt_winters")


def test_mase_and_mape_on_known_numbers():
    training = [1, 2, 3, 4, 5, 6, 7, 3, 4, 5, 6, 7, 8, 9]  # every seasonal difference is 2
    assert series.mase([10, 10], [12, 8], training) == pytest.approx(1.0)
    assert series.mase([10, 10], [11, 9], training) == pytest.approx(0.5)
    assert series.mape([10, 20, 0], [11, 18, 5]) == pytest.approx(10.0)  # the zero day has no percentage


def test_the_forecast_beats_seasonal_naive_on_mase_on_the_demo_history():
    days = demo_days(end=date(2026, 11, 30), days=280, recipes=["a", "b"], seed=14)
    result = series.backtest([d["orders"] for d in days], horizon=14, origins=4, step=14)
    assert result["origins"] == 4
    assert result["beats_seasonal_naive"], result
    assert result["mase"] < result["seasonal_naive_mase"]


def test_backtest_says_how_much_history_it_needs():
    with pytest.raises(series.SeriesError, match="need at least 91 days"):
        series.backtest(seasonal_trend(60), horizon=14, origins=8)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**6), st.text(max_size=2)),
        max_size=20,
    ),
    horizon=st.one_of(st.integers(-3, 400), st.floats(), st.none()),
    interval=st.one_of(st.floats(), st.integers(-1, 2)),
)
def test_any_input_gives_an_ordered_forecast_or_a_series_error(values, horizon, interval):
    try:
        result = series.forecast_volume(values, horizon, interval=interval)
    except series.SeriesError:
        return
    assert len(result.mean) == horizon
    for lo, m, up in zip(result.lower, result.mean, result.upper, strict=True):
        assert 0 <= lo <= m <= up and all(map(math.isfinite, (lo, m, up)))


def test_demo_history_is_deterministic_weekly_trending_and_dips_on_holidays():
    one = demo_days(end=date(2026, 12, 31), days=364, recipes=["b", "a"], seed=5)
    assert one == demo_days(end=date(2026, 12, 31), days=364, recipes=["a", "b"], seed=5)
    assert one != demo_days(end=date(2026, 12, 31), days=364, recipes=["a", "b"], seed=6)
    by_weekday = {w: [] for w in range(7)}
    for day in one:
        by_weekday[date.fromisoformat(day["day"]).weekday()].append(day["orders"])
    means = [sum(v) / len(v) for v in by_weekday.values()]
    assert means.index(max(means)) == WEEKLY.index(max(WEEKLY))  # Sundays busiest
    assert sum(d["orders"] for d in one[-63:-35]) > 1.15 * sum(d["orders"] for d in one[:28])  # growth
    christmas = next(d for d in one if d["day"] == "2026-12-25")
    week_before = next(d for d in one if d["day"] == "2026-12-18")
    assert christmas["orders"] < 0.3 * week_before["orders"]
    for day in one:
        assert sum(day["portions"].values()) >= 2 * day["orders"]
