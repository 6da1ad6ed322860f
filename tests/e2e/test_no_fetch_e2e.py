"""The bot never fetches a URL a member typed; only Discord's attachment URLs and
fal's own URLs (queue, storage, result files).

Every text field a member or admin can fill gets URLs: a canary HTTP server on 127.0.0.1 that
counts every request, and host names under `.invalid` that a fetch would first have to look
up. The process's audit hooks record every DNS lookup and every connection while members
work (nothing is patched), so the test sees any fetch, whoever would make it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from emulators.discord_emulator.interactions import Interaction
from tests.harness.e2e import World
from tests.harness.images import png
from tests.harness.security_fixtures import NetworkLog, modal_fields


class Canary:
    """An HTTP server that answers anything with a PNG and remembers that it was asked."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _any(self, request: web.Request) -> web.Response:
        self.hits.append(f"{request.method} {request.path_qs}")
        return web.Response(body=png(), content_type="image/png")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def urls(self, tag: str) -> str:
        """A few URLs in one string, each unique to the field it is typed into."""
        return (
            f"http://127.0.0.1:{self.port}/{tag}.png https://{tag}.canary.invalid/{tag}.png "
            f"https://127.0.0.1:{self.port}/{tag}.safetensors"
        )


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    server = Canary()
    await server.start()
    yield server
    await server.stop()


async def answered(world: World, ix: Interaction) -> str:
    return await world.reply_text(ix)


async def test_urls_typed_in_every_text_field_are_never_fetched(
    world: World, canary: Canary, network_log: NetworkLog
) -> None:
    emu = world.emu
    alice, carol, general = emu.member("alice"), emu.member("carol"), emu.channel("general")

    # The registry: every text option of /admin lora add and edit.
    text = await answered(
        world,
        await emu.slash(
            carol,
            general,
            "admin lora add",
            {
                "name": "canary",
                "path": "https://weights.canary.invalid/lora.safetensors",  # fal fetches, not us
                "triggers": canary.urls("t").replace(" ", ","),
                "description": canary.urls("description"),
            },
        ),
    )
    assert "Added `canary`" in text
    for options in (
        {"name": canary.urls("name"), "path": "owner/x"},
        {"name": "other", "path": f"http://127.0.0.1:{canary.port}/a.safetensors"},
    ):
        await answered(world, await emu.slash(carol, general, "admin lora add", options))
    await answered(
        world,
        await emu.slash(
            carol,
            general,
            "admin lora edit",
            {"name": "canary", "description": canary.urls("edited"), "new_name": "canary2"},
        ),
    )
    await answered(
        world,
        await emu.slash(
            carol, general, "admin lora edit", {"name": "canary2", "new_name": "canary"}
        ),
    )

    # Member commands and autocomplete.
    await emu.autocomplete(
        alice, general, "edit", {"prompt": "x", "lora": canary.urls("ac")}, focused="lora"
    )
    await emu.autocomplete(
        carol, general, "admin lora edit", {"name": canary.urls("adm")}, focused="name"
    )
    await answered(world, await emu.slash(alice, general, "loras", {"name": canary.urls("loras")}))
    await answered(world, await emu.slash(alice, general, "loras"))
    ix = await world.edit(prompt=canary.urls("lora-option"), lora=canary.urls("lora"))
    assert "LoRA" in await answered(world, ix)
    ix = await world.edit(prompt="see " + canary.urls("prompt"), lora="canary")
    assert "Edit #1 is on its way" in await answered(world, ix)
    result = await world.result()

    # Modals: Tweak (prompt, seed, scale) and Use as input.
    opened = await emu.click(alice, result, "job:1:tweak")
    await opened.response()
    assert opened.modal is not None
    fields = modal_fields(opened.modal)
    values = {
        fields["Prompt"][0]: canary.urls("tweak"),
        fields["Seed (empty for a new random one)"][0]: "http://a.b",  # the field takes 10
        fields["Scale of canary"][0]: "x.io/a",  # and this one 6
    }
    assert "must be a whole number" in await answered(
        world, await emu.submit_modal(alice, opened, values)
    )
    opened = await emu.click(alice, result, "job:1:tweak")  # a modal is answered once
    await opened.response()
    assert opened.modal is not None
    values = {modal_fields(opened.modal)["Prompt"][0]: canary.urls("tweak")}
    assert "Tweaked rerun started as edit #2" in await answered(
        world, await emu.submit_modal(alice, opened, values)
    )
    opened = await emu.click(alice, result, "job:1:reuse")
    await opened.response()
    assert opened.modal is not None
    reuse = {modal_fields(opened.modal)["Prompt for the next edit"][0]: canary.urls("reuse")}
    assert "Started edit #3" in await answered(world, await emu.submit_modal(alice, opened, reuse))
    for job_id in (2, 3):
        await world.job_in(job_id, "delivered")

    # The context menu on a message whose text is all links, with one real image attached.
    message = emu.post_user_message(
        alice, general, canary.urls("message"), [emu.attachment(png(500, 400), "real.png")]
    )
    opened = await emu.context_menu(alice, general, "Edit with FLUX.2 LoRA…", message)
    await opened.response()
    assert opened.modal is not None
    fields = modal_fields(opened.modal)
    values = {
        fields["Prompt"][0]: canary.urls("context"),
        fields["LoRAs (up to 3, comma-separated)"][0]: "canary",
    }
    assert "Edit #4 is on its way" in await answered(
        world, await emu.submit_modal(alice, opened, values)
    )
    await world.job_in(4, "delivered")

    # Nothing reached the canary, no typed host was looked up, and every connection went to
    # Discord (API, gateway and attachment files) or to fal (queue, REST and CDN).
    assert canary.hits == []
    typed_hosts = [h for h in network_log.lookups if "invalid" in h or "canary" in h]
    assert typed_hosts == []
    allowed = {
        int(url.rsplit(":", 1)[1])
        for url in (emu.base_url, world.fal.queue_url, world.fal.rest_url, world.fal.cdn_url)
    }
    assert network_log.ports() <= allowed, network_log.ports() - allowed
    assert canary.port not in network_log.ports()
    # The fetches that did happen: Discord's attachment files, and fal's result files.
    downloaded = {e.data.filename for e in emu.events if e.kind == "cdn_get"}
    assert {"input1.png", "real.png"} <= downloaded
    # Results come inline (sync_mode), so the bot fetched nothing from fal's CDN at all.
    assert [r for r in world.fal.requests_for("file") if r.method == "GET"] == []
    assert all(sent["sync_mode"] is True for sent in world.fal.submissions())
    # What members typed reached fal as text only: the LoRA path fal fetches is the registry's.
    for sent in world.fal.submissions():
        assert [lora["path"] for lora in sent["loras"]] == [
            "https://weights.canary.invalid/lora.safetensors"
        ]
        assert all(url.startswith(world.fal.cdn_url) for url in sent["image_urls"])
