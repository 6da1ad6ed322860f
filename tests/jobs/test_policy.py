"""jobs/policy.py and jobs/refusals.py: which limits apply to whom, and the words a member reads."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from cogs.utils.render import markup
from jobs.errors import Refused
from jobs.policy import (
    Requester,
    check_channel,
    is_manager,
    nsfw_action,
    quota_limits,
    safety_checker_on,
)
from jobs.refusals import describe_refusal
from storage.models import (
    ChannelSettings,
    EffectiveSettings,
    GuildSettings,
    QuotaLimits,
    Refusal,
)
from storage.settings import resolve

GUILD, CHANNEL, USER = 1, 10, 100
SILVER, GOLD, MOD, MANAGER = 1001, 1002, 1003, 1004


def who(*roles: int, user: int = USER, manage_guild: bool = False) -> Requester:
    return Requester(
        guild_id=GUILD,
        channel_id=CHANNEL,
        user_id=user,
        role_ids=frozenset(roles),
        can_manage_guild=manage_guild,
    )


SERVER = GuildSettings(
    default_quota=5,
    window_hours=12,
    role_quotas={SILVER: 2, GOLD: 8},
    user_quotas={200: 1, 300: 0},
    exempt_roles=[MOD],
    max_in_flight=3,
    monthly_budget_usd=25.0,
    manager_roles=[MANAGER],
)


@pytest.mark.parametrize(
    ("requester", "images"),
    [
        (who(), 5),  # no matching role: the server default
        (who(SILVER), 2),  # a role quota wins even when lower than the default
        (who(SILVER, GOLD), 8),  # the highest matching role wins, whatever the order
        (who(GOLD, SILVER), 8),
        (who(GOLD, user=200), 1),  # a member override beats every role
        (who(user=300), 0),  # ... and 0 is a real override, not "unset"
        (who(MOD, GOLD), None),  # exempt
        (who(MOD, user=200), 1),  # the member override holds even for an exempt role
    ],
)
def test_quota_limits_pick_the_rule_that_applies(requester: Requester, images: int | None) -> None:
    limits = quota_limits(SERVER, requester)
    assert limits.images_per_window == images
    assert limits.window_seconds == 12 * 3600
    assert limits.monthly_budget_usd == 25.0  # the budget binds everyone, exempt or not


def test_exempt_members_have_no_in_flight_limit_and_others_do() -> None:
    assert quota_limits(SERVER, who(MOD)).max_in_flight is None
    assert quota_limits(SERVER, who()).max_in_flight == 3
    assert quota_limits(SERVER, who(MOD, user=200)).max_in_flight == 3


def test_a_zero_budget_means_no_cap() -> None:
    assert quota_limits(GuildSettings(), who()).monthly_budget_usd is None


def test_defaults_for_a_server_that_never_saved_settings() -> None:
    limits = quota_limits(GuildSettings(), who())
    assert limits == QuotaLimits(
        images_per_window=10, window_seconds=86400, max_in_flight=2, monthly_budget_usd=None
    )


def _effective(rules: dict[int, str], channel: int) -> EffectiveSettings:
    guild = GuildSettings.model_validate({"channel_rules": rules})
    return resolve(GUILD, channel, guild, ChannelSettings())


def test_channel_rules() -> None:
    check_channel(_effective({}, 10))
    check_channel(_effective({11: "deny"}, 10))
    with pytest.raises(Refused) as refused:
        check_channel(_effective({10: "deny"}, 10))
    assert re.search(r"^Edits are turned off in this channel\.$", markup(refused.value.parts))
    check_channel(_effective({10: "allow"}, 10))
    # One allowed channel turns the others off, and the refusal points there.
    with pytest.raises(Refused) as refused:
        check_channel(_effective({11: "allow", 12: "allow", 13: "deny"}, 10))
    assert re.search(r"Try <#11>, <#12>\.$", markup(refused.value.parts))


def test_managers_are_manage_server_or_a_named_role() -> None:
    assert is_manager(SERVER, who(manage_guild=True))
    assert is_manager(SERVER, who(MANAGER))
    assert not is_manager(SERVER, who(MOD, GOLD))


@pytest.mark.parametrize(
    ("policy", "channel_nsfw", "checker", "action"),
    [
        ("block", False, True, "block"),
        ("block", True, True, "block"),
        ("spoiler", False, True, "spoiler"),
        ("spoiler", True, True, "spoiler"),
        ("allow_in_nsfw_channels", False, True, "block"),
        ("allow_in_nsfw_channels", True, False, "allow"),
    ],
)
def test_nsfw_policy(policy: str, channel_nsfw: bool, checker: bool, action: str) -> None:
    assert safety_checker_on(policy, channel_nsfw) is checker
    assert nsfw_action(policy, channel_nsfw) == action


LIMITS = QuotaLimits(images_per_window=10, window_seconds=86400, max_in_flight=2)
FREES = datetime(2026, 5, 1, 14, 5, tzinfo=UTC)


def quota_refusal(used: int, limit: int, wanted: int, frees: datetime | None) -> Refusal:
    return Refusal(kind="quota", used=used, limit=limit, requested=wanted, next_free_at=frees)


def test_quota_refusal_gives_the_numbers_and_when_the_next_frees() -> None:
    text = markup(describe_refusal(quota_refusal(10, 10, 1, FREES), 1, LIMITS))
    assert text == (
        f"You've used 10 of 10 images in the last 24 h; the next one frees "
        f"<t:{int(FREES.timestamp())}:R>."
    )


def test_quota_refusal_for_a_job_larger_than_what_is_left() -> None:
    text = markup(describe_refusal(quota_refusal(8, 10, 4, FREES), 4, LIMITS))
    assert text.startswith(
        "You've used 8 of 10 images in the last 24 h; this edit makes 4 and you have 2 left; "
        "the next one frees <t:"
    )


def test_quota_refusal_of_zero_says_edits_are_off_for_the_member() -> None:
    text = markup(describe_refusal(quota_refusal(0, 0, 1, None), 1, LIMITS))
    assert text == (
        "Your quota on this server is 0 images per 24 h, so you can't make edits here. "
        "An admin can change it with `/admin quota`."
    )


def test_in_flight_and_budget_refusals() -> None:
    running = Refusal(kind="in_flight", used=2, limit=2, requested=1, next_free_at=None)
    assert markup(describe_refusal(running, 1, LIMITS)).startswith(
        "You already have 2 edits running (the limit is 2)."
    )
    budget = Refusal(kind="budget", used=25.0, limit=25.0, requested=0.04, next_free_at=FREES)
    assert markup(describe_refusal(budget, 1, LIMITS)) == (
        "This server has spent $25.00 of its $25.00 monthly budget for edits; it resets "
        f"<t:{int(FREES.timestamp())}:D>. An admin can raise it with `/admin budget set`."
    )


def test_a_thread_follows_its_parent_channels_rules() -> None:
    from jobs.policy import Requester

    assert Requester(guild_id=1, channel_id=50, user_id=2).rules_channel_id == 50
    in_thread = Requester(guild_id=1, channel_id=51, user_id=2, parent_channel_id=50)
    assert in_thread.rules_channel_id == 50
