"""The per-server LoRA registry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from storage import DuplicateName, Lora, LoraLimitReached, LoraNotFound, Storage
from storage.dialect import Tx
from tests.harness.storage_fixtures import T0

# An exception in a storage thread (say, reporting into a closed loop) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

ADMIN = 77
URL = "https://huggingface.co/acme/anime/resolve/main/anime.safetensors"


async def add(storage: Storage, name: str, guild_id: int = 1, **kwargs: object) -> Lora:
    return await storage.loras.add(
        guild_id, name, kwargs.pop("path", URL), actor_id=ADMIN, **kwargs
    )


async def test_add_stores_every_field_and_records_the_change(storage: Storage) -> None:
    lora = await storage.loras.add(
        1,
        "  Anime Style ",
        URL,
        default_scale=0.8,
        trigger_words=["anime", "cel shading"],
        description="Flat colours, bold lines",
        nsfw=False,
        actor_id=ADMIN,
        now=T0,
    )

    assert (lora.guild_id, lora.name, lora.path, lora.default_scale) == (
        1,
        "Anime Style",
        URL,
        0.8,
    )
    assert lora.trigger_words == ["anime", "cel shading"]
    assert (lora.enabled, lora.nsfw, lora.version, lora.uses) == (True, False, 1, 0)
    assert (lora.created_by, lora.created_at, lora.updated_at) == (ADMIN, T0, T0)
    assert await storage.loras.get(1, "anime style") == lora
    assert await storage.loras.get_by_id(lora.id) == lora
    [change] = await storage.loras.history(1, "ANIME STYLE")
    assert (change.action, change.actor_id, change.lora_name, change.at) == (
        "add",
        ADMIN,
        "Anime Style",
        T0,
    )
    assert change.details["default_scale"] == 0.8


async def test_names_are_unique_per_server_ignoring_case(storage: Storage) -> None:
    await add(storage, "Straße")
    with pytest.raises(DuplicateName, match="'Straße' already exists"):
        await add(storage, "STRASSE")  # casefold, not just ASCII lower()
    with pytest.raises(DuplicateName):
        await add(storage, "straße")
    other_server = await add(storage, "straße", guild_id=2)
    assert other_server.guild_id == 2


async def test_per_server_maximum_is_enforced(storage: Storage) -> None:
    for index in range(3):
        await add(storage, f"lora-{index}", max_per_guild=3)
    with pytest.raises(LoraLimitReached, match="already has 3 LoRAs"):
        await add(storage, "one-too-many", max_per_guild=3)
    await add(storage, "elsewhere", guild_id=2, max_per_guild=3)
    assert await storage.loras.count(1) == 3


async def test_invalid_fields_are_refused_before_writing(storage: Storage) -> None:
    with pytest.raises(ValidationError):
        await add(storage, "too-strong", default_scale=4.5)
    with pytest.raises(ValidationError):
        await add(storage, "   ")
    assert await storage.loras.count(1, include_disabled=True, include_nsfw=True) == 0


async def test_update_bumps_version_records_a_diff_and_can_rename(storage: Storage) -> None:
    await add(storage, "Anime", now=T0)
    later = T0 + timedelta(hours=1)

    updated = await storage.loras.update(
        1,
        "anime",
        ADMIN + 1,
        name="Anime v2",
        default_scale=1.5,
        trigger_words=["anime"],
        now=later,
    )

    assert (updated.name, updated.default_scale, updated.trigger_words) == (
        "Anime v2",
        1.5,
        ["anime"],
    )
    assert (updated.version, updated.updated_at, updated.created_at) == (2, later, T0)
    assert await storage.loras.get(1, "Anime") is None
    history = await storage.loras.history(1, "anime v2")
    assert [change.action for change in history] == ["add", "edit"]
    assert history[1].details == {
        "name": {"old": "Anime", "new": "Anime v2"},
        "default_scale": {"old": 1.0, "new": 1.5},
        "trigger_words": {"old": [], "new": ["anime"]},
    }
    assert history[1].actor_id == ADMIN + 1


async def test_update_that_changes_nothing_keeps_the_version(storage: Storage) -> None:
    lora = await add(storage, "Anime", default_scale=1.0)
    same = await storage.loras.update(1, "ANIME", ADMIN, default_scale=1.0)
    assert same == lora
    assert len(await storage.loras.history(1, "anime")) == 1


async def test_update_refuses_a_clashing_rename_and_bad_values(storage: Storage) -> None:
    await add(storage, "Anime")
    await add(storage, "Oil")
    with pytest.raises(DuplicateName):
        await storage.loras.update(1, "oil", ADMIN, name="ANIME")
    with pytest.raises(ValidationError):
        await storage.loras.update(1, "oil", ADMIN, default_scale=-1)
    with pytest.raises(ValidationError):
        await storage.loras.update(1, "oil", ADMIN, enabled=False)
    with pytest.raises(LoraNotFound, match="no LoRA named 'nope'"):
        await storage.loras.update(1, "nope", ADMIN, description="x")
    renamed_case = await storage.loras.update(1, "oil", ADMIN, name="OIL")
    assert renamed_case.name == "OIL" and renamed_case.version == 2


async def test_disable_enable_are_recorded_once_and_keep_the_version(storage: Storage) -> None:
    await add(storage, "Anime")
    disabled = await storage.loras.set_enabled(1, "anime", False, actor_id=ADMIN)
    again = await storage.loras.set_enabled(1, "anime", False, actor_id=ADMIN)
    enabled = await storage.loras.set_enabled(1, "anime", True, actor_id=ADMIN)

    assert not disabled.enabled and again == disabled and enabled.enabled
    assert enabled.version == 1
    actions = [change.action for change in await storage.loras.history(1, "anime")]
    assert actions == ["add", "disable", "enable"]


async def test_remove_deletes_but_history_remains(storage: Storage) -> None:
    lora = await add(storage, "Anime")
    removed = await storage.loras.remove(1, "ANIME", actor_id=ADMIN)

    assert removed == lora
    assert await storage.loras.get(1, "anime") is None
    assert await storage.loras.get_by_id(lora.id) is None
    assert [c.action for c in await storage.loras.history(1, "anime")] == ["add", "remove"]
    with pytest.raises(LoraNotFound):
        await storage.loras.remove(1, "anime", actor_id=ADMIN)

    # The name is free again; history follows the new LoRA now.
    await add(storage, "anime")
    assert [c.action for c in await storage.loras.history(1, "Anime")] == ["add"]
    assert await storage.loras.history(1, "never-existed") == []


async def test_list_and_count_filter_and_page_in_name_order(storage: Storage) -> None:
    for name in ["delta", "Alpha", "charlie", "bravo", "echo"]:
        await add(storage, name)
    await add(storage, "nsfw-one", nsfw=True)
    await storage.loras.set_enabled(1, "echo", False, actor_id=ADMIN)
    await add(storage, "other-server", guild_id=2)

    page = await storage.loras.list(1, limit=2)
    assert [lora.name for lora in page] == ["Alpha", "bravo"]
    page2 = await storage.loras.list(1, offset=2, limit=2)
    assert [lora.name for lora in page2] == ["charlie", "delta"]
    everything = await storage.loras.list(1, include_disabled=True, include_nsfw=True)
    assert [lora.name for lora in everything] == [
        "Alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "nsfw-one",
    ]
    assert await storage.loras.count(1) == 4
    assert await storage.loras.count(1, include_disabled=True) == 5
    assert await storage.loras.count(1, include_nsfw=True, include_disabled=True) == 6


async def test_search_ranks_prefix_then_substring_then_description(storage: Storage) -> None:
    await add(storage, "Watercolor")
    await add(storage, "Soft Water", description="gentle")
    await add(storage, "Ink", description="looks like WATER on paper")
    await add(storage, "Aquarelle", description="nothing to see")
    await add(storage, "water-off", nsfw=True)
    await add(storage, "Waterfall")
    await storage.loras.set_enabled(1, "waterfall", False, actor_id=ADMIN)

    found = await storage.loras.search(1, "WATER")
    assert [lora.name for lora in found] == ["Watercolor", "Soft Water", "Ink"]
    everything = await storage.loras.search(1, "water", include_disabled=True, include_nsfw=True)
    assert [lora.name for lora in everything] == [
        "water-off",
        "Watercolor",
        "Waterfall",
        "Soft Water",
        "Ink",
    ]
    assert [lora.name for lora in await storage.loras.search(1, "water", limit=1)] == ["Watercolor"]


async def test_search_treats_like_wildcards_literally_and_empty_lists_all(
    storage: Storage,
) -> None:
    await add(storage, "100%_real")
    await add(storage, "1000 real")
    assert [lora.name for lora in await storage.loras.search(1, "100%")] == ["100%_real"]
    assert [lora.name for lora in await storage.loras.search(1, "0_r")] == []
    assert [lora.name for lora in await storage.loras.search(1, "")] == ["100%_real", "1000 real"]


async def test_search_returns_at_most_25_among_a_thousand(storage: Storage) -> None:
    async def add_many() -> None:
        async def work(tx: Tx) -> None:
            for n in range(1000):
                await tx.execute(
                    """INSERT INTO loras (guild_id, name, name_key, path, default_scale,
                                          created_by, created_at, updated_at)
                       VALUES (1, ?, ?, 'p', 1.0, 1, 0, 0)""",
                    (f"Style {n:04d}", f"style {n:04d}"),
                )

        await storage._conn.write(work)

    await add_many()
    found = await storage.loras.search(1, "style 01")
    assert len(found) == 25
    assert [lora.name for lora in found[:2]] == ["Style 0100", "Style 0101"]
    assert len(await storage.loras.search(1, "9")) == 25


async def test_increment_uses_counts_each_distinct_lora_once_per_call(storage: Storage) -> None:
    a = await add(storage, "a")
    b = await add(storage, "b")
    await storage.loras.increment_uses([a.id, b.id, a.id])
    await storage.loras.increment_uses([a.id])
    await storage.loras.increment_uses([])
    got_a, got_b = await storage.loras.get_by_id(a.id), await storage.loras.get_by_id(b.id)
    assert got_a is not None and got_b is not None
    assert (got_a.uses, got_b.uses) == (2, 1)
