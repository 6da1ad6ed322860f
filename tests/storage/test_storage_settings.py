"""Server settings, channel overrides, the effective view, meta values."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from storage import ChannelSettings, GuildSettings, Storage

# An exception in a storage thread (say, reporting into a closed loop) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


async def test_a_server_without_settings_gets_the_defaults(storage: Storage) -> None:
    settings = await storage.settings.get(1)
    assert settings == GuildSettings()
    assert (settings.default_quota, settings.window_hours, settings.max_in_flight) == (10, 24, 2)
    assert (settings.monthly_budget_usd, settings.rerun_policy, settings.nsfw_policy) == (
        0.0,
        "anyone",
        "block",
    )
    assert (settings.max_images_per_job, settings.max_steps) == (4, 50)


async def test_saved_settings_round_trip_with_integer_keys(storage: Storage) -> None:
    saved = GuildSettings(
        default_quota=5,
        role_quotas={111: 20, 222: 50},
        user_quotas={333: 0},
        exempt_roles=[444],
        monthly_budget_usd=12.5,
        nsfw_policy="spoiler",
        manager_roles=[555],
        channel_rules={10: "allow", 11: "deny"},
    )
    await storage.settings.save(1, saved)
    loaded = await storage.settings.get(1)
    assert loaded == saved
    assert list(loaded.role_quotas) == [111, 222]  # ints again, not JSON's strings
    assert await storage.settings.get(2) == GuildSettings()


async def test_update_is_atomic_read_modify_write(storage: Storage) -> None:
    def add_role(role: int) -> object:
        return lambda s: s.model_copy(update={"role_quotas": {**s.role_quotas, role: role}})

    await asyncio.gather(*(storage.settings.update(1, add_role(r)) for r in range(1, 21)))
    assert (await storage.settings.get(1)).role_quotas == {r: r for r in range(1, 21)}


async def test_update_validates_what_the_change_returns(storage: Storage) -> None:
    with pytest.raises(ValidationError):
        await storage.settings.update(1, lambda s: s.model_copy(update={"max_images_per_job": 9}))
    assert await storage.settings.get(1) == GuildSettings()


async def test_channel_overrides_and_the_effective_view(storage: Storage) -> None:
    await storage.settings.save(1, GuildSettings(nsfw_policy="block", max_steps=40))
    await storage.settings.save_channel(
        1, 10, ChannelSettings(nsfw_policy="allow_in_nsfw_channels", max_images_per_job=2)
    )

    there = await storage.settings.effective(1, 10)
    elsewhere = await storage.settings.effective(1, 11)

    assert (there.nsfw_policy, there.max_images_per_job, there.max_steps) == (
        "allow_in_nsfw_channels",
        2,
        40,
    )
    assert (elsewhere.nsfw_policy, elsewhere.max_images_per_job, elsewhere.max_steps) == (
        "block",
        4,
        40,
    )
    assert there.channel == await storage.settings.get_channel(1, 10)
    assert elsewhere.channel == ChannelSettings()
    assert await storage.settings.get_channel(2, 10) == ChannelSettings()

    await storage.settings.save_channel(1, 10, ChannelSettings())  # clearing removes overrides
    assert (await storage.settings.effective(1, 10)).nsfw_policy == "block"


@pytest.mark.parametrize(
    ("rules", "allowed", "denied"),
    [
        ({}, [10, 11], []),
        ({11: "deny"}, [10, 12], [11]),
        ({10: "allow", 11: "deny"}, [10], [11, 12]),
    ],
)
async def test_channel_rules_allow_list_or_deny_list(
    storage: Storage, rules: dict[int, str], allowed: list[int], denied: list[int]
) -> None:
    await storage.settings.save(1, GuildSettings.model_validate({"channel_rules": rules}))
    for channel in allowed:
        assert (await storage.settings.effective(1, channel)).channel_allowed
    for channel in denied:
        assert not (await storage.settings.effective(1, channel)).channel_allowed


async def test_meta_values(storage: Storage) -> None:
    assert await storage.settings.get_meta("commands_hash") is None
    await storage.settings.set_meta("commands_hash", "v1")
    await storage.settings.set_meta("commands_hash", "v2")
    assert await storage.settings.get_meta("commands_hash") == "v2"
