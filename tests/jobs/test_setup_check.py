"""The setup checklist decides what is missing from plain facts: stored settings, the number of
LoRAs, and the bot's permissions per channel as Discord reported them."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.setup_check import (
    CHANNELS_CHECKED,
    NEEDED_PERMISSIONS,
    ChannelFacts,
    build_checklist,
    channels_to_check,
    may_post,
    missing_permissions,
)
from jobs.text import ChannelRef, RoleRef, plain
from storage.models import GuildSettings

ALL = dict.fromkeys(NEEDED_PERMISSIONS, True)
READY: dict[str, Any] = {
    "default_quota": 10,
    "monthly_budget_usd": 50.0,
    "manager_roles": [77],
    "channel_rules": {5: "allow"},
}


def ready_checklist(**changes: Any) -> Any:
    loras = changes.pop("loras", 3)
    granted = changes.pop("granted", ALL)
    settings = GuildSettings(**(READY | changes))
    return build_checklist(settings, enabled_loras=loras, channels=[ChannelFacts(5, granted)])


def test_a_configured_server_has_nothing_missing() -> None:
    checklist = ready_checklist()
    assert [item.key for item in checklist.items] == [
        "loras",
        "quota",
        "budget",
        "managers",
        "channels",
        "permissions",
    ]
    assert checklist.missing == () and checklist.done == 6
    managers = next(item for item in checklist.items if item.key == "managers")
    assert RoleRef(77) in managers.text
    channels = next(item for item in checklist.items if item.key == "channels")
    assert ChannelRef(5) in channels.text


@pytest.mark.parametrize(
    ("changes", "key", "fix"),
    [
        ({"loras": 0}, "loras", "/admin lora add"),
        ({"default_quota": 0}, "quota", "/admin quota default"),
        ({"monthly_budget_usd": 0.0}, "budget", "/admin budget set"),
        ({"manager_roles": []}, "managers", "/admin settings managers"),
        ({"channel_rules": {5: "deny"}}, "channels", "/admin settings channel"),
        ({"granted": ALL | {"attach_files": False}}, "permissions", "allow Attach Files"),
    ],
    ids=["no-loras", "zero-quota", "no-budget", "no-managers", "no-allowed-channel", "perms"],
)
def test_each_missing_item_is_named_with_its_fix(
    changes: dict[str, Any], key: str, fix: str
) -> None:
    checklist = ready_checklist(**changes)
    assert [item.key for item in checklist.missing] == [key]
    assert fix in plain(checklist.missing[0].fix)


def test_missing_permissions_are_named_as_discord_shows_them() -> None:
    granted = ALL | {"add_reactions": False, "read_message_history": False}
    assert missing_permissions(granted) == ["Add Reactions", "Read Message History"]
    assert missing_permissions(None) == list(NEEDED_PERMISSIONS.values())
    assert missing_permissions({}) == list(NEEDED_PERMISSIONS.values())
    item = ready_checklist(granted=granted).missing[0]
    assert "I'm missing Add Reactions, Read Message History." in plain(item.text)


def test_a_channel_that_is_gone_is_missing() -> None:
    settings = GuildSettings(**READY)
    checklist = build_checklist(settings, enabled_loras=1, channels=[ChannelFacts(5, None)])
    assert "can't find this channel" in plain(checklist.missing[0].text)


def test_allowed_channels_are_checked_else_the_current_one() -> None:
    assert channels_to_check(GuildSettings(), 9) == [9]
    rules = GuildSettings(channel_rules={1: "allow", 2: "deny", 3: "allow"})
    assert channels_to_check(rules, 9) == [1, 3]


def test_many_allowed_channels_fit_one_message() -> None:
    facts = [ChannelFacts(i, ALL) for i in range(CHANNELS_CHECKED + 3)]
    checklist = build_checklist(GuildSettings(**READY), enabled_loras=1, channels=facts)
    assert sum(item.key == "permissions" for item in checklist.items) == CHANNELS_CHECKED
    assert checklist.more_channels == 3


@pytest.mark.parametrize(
    ("granted", "ok"),
    [
        ({"view_channel": True, "send_messages": True}, True),
        ({"view_channel": True, "send_messages": False}, False),
        ({"view_channel": False, "send_messages": True}, False),
        (None, False),
    ],
    ids=["view-and-send", "no-send", "no-view", "unknown"],
)
def test_posting_a_plain_message_needs_view_and_send(
    granted: dict[str, bool] | None, ok: bool
) -> None:
    assert may_post(granted) is ok
