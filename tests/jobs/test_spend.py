"""The month's projection and the chart's numbers, from the ledger's spend per day."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from jobs.alerts import crossed_thresholds
from jobs.spend import build_chart, ordinal, project
from storage.models import DaySpend

NOW = datetime(2025, 4, 10, 12, 0, tzinfo=UTC)  # 9.5 days gone, 20.5 left of 30


@pytest.mark.parametrize(
    ("day", "text"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (22, "22nd"),
        (23, "23rd"),
        (31, "31st"),
    ],
)
def test_ordinals(day: int, text: str) -> None:
    assert ordinal(day) == text


def test_the_projection_names_the_day_the_budget_runs_out() -> None:
    # $19 in 9.5 days is $2 a day; the $40 budget has $21 left: 10.5 days, the 21st.
    projection = project(19.0, 40.0, NOW)
    assert projection.per_day_usd == pytest.approx(2.0)
    assert projection.month_end_usd == pytest.approx(60.0)
    assert projection.runs_out_on == date(2025, 4, 21)
    assert projection.sentence() == "At this rate the budget runs out on the 21st."


@pytest.mark.parametrize(
    ("spent", "budget", "sentence"),
    [
        (19.0, 100.0, "At this rate the month ends at $60.00, within the budget."),
        (19.0, 0.0, "At this rate the month ends at $60.00 (no budget set)."),
        (0.0, 40.0, "Nothing spent this month yet."),
    ],
    ids=["within-budget", "no-budget", "nothing-spent"],
)
def test_the_projection_when_the_budget_lasts(spent: float, budget: float, sentence: str) -> None:
    projection = project(spent, budget, NOW)
    assert projection.runs_out_on is None
    assert projection.sentence() == sentence


def test_a_spent_budget_says_the_day_it_ran_out() -> None:
    days = [
        DaySpend(day=date(2025, 4, 2), usd=10.0, images=5),
        DaySpend(day=date(2025, 4, 6), usd=10.0, images=5),
        DaySpend(day=date(2025, 4, 9), usd=5.0, images=2),
    ]
    projection = project(25.0, 20.0, NOW, days)
    assert projection.ran_out_on == date(2025, 4, 6)
    assert projection.sentence() == "The budget ran out on the 6th."


def test_an_early_edit_does_not_project_a_fortune() -> None:
    first_hour = datetime(2025, 4, 1, 0, 30, tzinfo=UTC)
    projection = project(3.0, 0.0, first_hour)
    assert projection.per_day_usd == pytest.approx(3.0)  # over at least one day


def test_the_chart_has_every_day_so_far_as_a_running_total() -> None:
    days = [
        DaySpend(day=date(2025, 4, 2), usd=0.5, images=5),
        DaySpend(day=date(2025, 4, 4), usd=0.25, images=2),
    ]
    chart = build_chart(days, 2.0, NOW, top_members=[(1, 5), (2, 2)], top_loras=[("clay", 7)] * 7)
    assert chart.cumulative == (
        (1, 0.0),
        (2, 0.5),
        (3, 0.5),
        (4, 0.75),
        (5, 0.75),
        (6, 0.75),
        (7, 0.75),
        (8, 0.75),
        (9, 0.75),
        (10, 0.75),
    )
    assert (chart.month, chart.days_in_month, chart.today) == (date(2025, 4, 1), 30, 10)
    assert chart.projection.spent_usd == pytest.approx(0.75)
    assert len(chart.top_loras) == 5 and chart.top_members == ((1, 5), (2, 2))


@pytest.mark.parametrize(
    ("spent", "budget", "refused", "crossed"),
    [
        (24.99, 50.0, False, []),
        (25.0, 50.0, False, [50]),
        (40.0, 50.0, False, [50, 80]),
        (50.0, 50.0, False, [50, 80, 100]),
        (30.0, 50.0, True, [50, 100]),
        (30.0, 0.0, True, []),
        (0.1 + 0.2, 0.6, False, [50]),  # exact money: 0.30000000000000004 of 0.6 is 50 %
    ],
    ids=["below", "at-50", "past-80", "used-up", "refused", "no-budget", "float-noise"],
)
def test_thresholds_crossed(spent: float, budget: float, refused: bool, crossed: list[int]) -> None:
    assert crossed_thresholds(spent, budget, refused=refused) == crossed
