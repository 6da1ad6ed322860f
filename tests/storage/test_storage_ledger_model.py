"""The quota ledger against a plain-Python model, on random sequences of operations.

Each example opens a fresh database (on each backend), replays admissions, deliveries,
failures, resets and clock moves (across a month boundary), and after every step compares what
storage says (the admission outcome, window usage, jobs in flight, month spend) with the model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import Job, JobState, QuotaLimits, Refusal, Storage
from storage.clock import month_key, to_micro_usd
from tests.harness.storage_fixtures import make_job

# An exception in a storage thread (say, reporting into a closed loop) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

START = datetime(2025, 1, 31, 20, 0, tzinfo=UTC)  # a month boundary is hours away
USERS = (1, 2)


@dataclass
class Reservation:
    job_id: int
    user: int
    images: int
    cost: int
    at: datetime
    state: str = "reserved"
    forgiven: bool = False


@dataclass
class Model:
    limits: QuotaLimits
    rows: list[Reservation]

    def counted(self, user: int, now: datetime) -> list[Reservation]:
        start = now - timedelta(seconds=self.limits.window_seconds)
        return [
            r
            for r in self.rows
            if r.user == user and r.at > start and r.state != "refunded" and not r.forgiven
        ]

    def in_flight(self, user: int) -> int:
        return sum(1 for r in self.rows if r.user == user and r.state == "reserved")

    def spend(self, now: datetime) -> int:
        month = month_key(now)
        return sum(r.cost for r in self.rows if month_key(r.at) == month and r.state != "refunded")

    def verdict(self, user: int, images: int, cost: int, now: datetime) -> str | None:
        budget = self.limits.monthly_budget_usd
        if budget and self.spend(now) + cost > to_micro_usd(budget):
            return "budget"
        limit = self.limits.images_per_window
        used = sum(r.images for r in self.counted(user, now))
        if limit is not None and used + images > limit:
            return "quota"
        cap = self.limits.max_in_flight
        if cap is not None and self.in_flight(user) >= cap:
            return "in_flight"
        return None


operation = st.one_of(
    st.tuples(
        st.just("admit"),
        st.sampled_from(USERS),
        st.integers(1, 3),
        st.sampled_from([0.021, 0.042, 0.084]),
    ),
    st.tuples(st.sampled_from(["deliver", "fail"]), st.integers(0, 30)),
    st.tuples(st.just("reset"), st.sampled_from(USERS)),
    st.tuples(st.just("wait"), st.integers(1, 300)),
)

limit_sets = st.builds(
    QuotaLimits,
    images_per_window=st.none() | st.integers(0, 6),
    window_seconds=st.sampled_from([3600, 6 * 3600]),
    max_in_flight=st.none() | st.integers(1, 3),
    monthly_budget_usd=st.sampled_from([None, 0.0, 0.2, 0.5]),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(limits=limit_sets, operations=st.lists(operation, min_size=1, max_size=30))
async def test_ledger_matches_a_simple_model(
    fresh_database: Callable[[], Awaitable[str]],
    limits: QuotaLimits,
    operations: list[tuple[object, ...]],
) -> None:
    storage = await Storage.open(await fresh_database())
    try:
        await replay(storage, Model(limits, []), operations)
    finally:
        await storage.close()


async def replay(storage: Storage, model: Model, operations: list[tuple[object, ...]]) -> None:
    now = START
    for op in operations:
        kind = op[0]
        if kind == "admit":
            _, user, images, usd = op
            assert isinstance(user, int) and isinstance(images, int) and isinstance(usd, float)
            expected = model.verdict(user, images, to_micro_usd(usd), now)
            outcome = await storage.jobs.admit(
                make_job(user_id=user, images=images, cost_usd=usd), model.limits, now=now
            )
            if expected is None:
                assert isinstance(outcome, Job), outcome
                model.rows.append(Reservation(outcome.id, user, images, to_micro_usd(usd), now))
            else:
                assert isinstance(outcome, Refusal) and outcome.kind == expected, outcome
        elif kind in ("deliver", "fail"):
            live = [r for r in model.rows if r.state == "reserved"]
            if not live:
                continue
            target = live[int(str(op[1])) % len(live)]
            route = (
                [JobState.SUBMITTED, JobState.COMPLETED, JobState.DELIVERED]
                if kind == "deliver"
                else [JobState.FAILED]
            )
            for state in route:
                await storage.jobs.transition(target.job_id, state, now=now)
            target.state = "committed" if kind == "deliver" else "refunded"
        elif kind == "reset":
            user = op[1]
            forgiven = await storage.quotas.reset(1, int(str(user)), now=now)
            fresh = [r for r in model.rows if r.user == user and r.state != "refunded"]
            expected_forgiven = sum(r.images for r in fresh if not r.forgiven)
            for r in fresh:
                r.forgiven = True
            assert forgiven == expected_forgiven
        else:
            now += timedelta(minutes=int(str(op[1])))

        for user in USERS:
            usage = await storage.quotas.usage(1, user, model.limits.window_seconds, now=now)
            counted = model.counted(user, now)
            assert usage.images_used == sum(r.images for r in counted)
            assert usage.in_flight == model.in_flight(user)
            oldest = min((r.at for r in counted), default=None)
            window = timedelta(seconds=model.limits.window_seconds)
            assert usage.next_free_at == (None if oldest is None else oldest + window)
        assert await storage.quotas.guild_spend(1, now=now) == pytest.approx(model.spend(now) / 1e6)
