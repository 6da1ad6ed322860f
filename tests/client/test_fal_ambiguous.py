"""Answers fal gives after it has taken a request: the client follows a request id it is given,
never resends a submit fal may hold (except the documented ingress retry), and follows whatever
URL form fal returns. Each test counts the jobs the emulator created: each one is billed."""

from __future__ import annotations

import pytest

from client.errors import FalSubmitOutcomeUnknown
from client.fal import FalClient
from client.schema import EditInput, QueueStatus
from emulators.fal_emulator import FalEmulator, data_uri, make_image
from emulators.fal_emulator.fixtures import make_fal_client

IMAGE = data_uri(make_image(), "image/png")


def edit(prompt: str = "ambiguous") -> EditInput:
    return EditInput(prompt=prompt, image_urls=[IMAGE], seed=1, image_size="square")


def recorder(client: FalClient) -> list[str]:
    seen: list[str] = []
    client.on_ambiguous_submit = seen.append
    return seen


async def finish(client: FalClient, request_id: str | None = None) -> str:
    handle, _ = await client.submit(edit())
    if request_id is not None:
        assert handle.request_id == request_id
    statuses: list[QueueStatus] = [status async for status in client.watch(handle)]
    assert statuses[-1].is_completed
    output = await client.result(handle)
    assert output.images
    return handle.request_id


async def test_a_submit_answered_500_with_a_request_id_is_followed_not_resent(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    seen = recorder(fal_client)
    fal_emulator.script_faults("submit", "server_error")

    request_id = await finish(fal_client)

    assert fal_emulator.count("submit") == 1
    assert list(fal_emulator.jobs) == [request_id]  # the one job fal made (and bills) is ours
    assert fal_emulator.jobs[request_id].status == "COMPLETED"
    assert seen == ["server_error_500_adopted"]


@pytest.mark.parametrize("route", ["status", "stream", "result"])
async def test_a_500_with_a_request_id_on_a_read_is_retried_and_runs_the_job_once(
    fal_emulator: FalEmulator, fal_client: FalClient, route: str
) -> None:
    fal_emulator.sse_enabled = route == "stream"  # without the stream, the client polls
    fal_emulator.script_faults(route, "server_error")

    await finish(fal_client)

    assert len(fal_emulator.jobs) == 1 and fal_emulator.count("submit") == 1
    faulted = [r for r in fal_emulator.requests if r.route == route and r.fault]
    assert [r.status for r in faulted] == [500]


async def test_a_cancel_answered_500_with_a_request_id_is_retried(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    """The first cancel took effect before the 500, so the retry finds the request already
    ended: the client says so, and fal ran nothing."""
    fal_emulator.queue_delay = 30.0
    handle, _ = await fal_client.submit(edit())
    fal_emulator.script_faults("cancel", "server_error")

    assert await fal_client.cancel(handle) == "already_completed"

    assert not fal_emulator.jobs[handle.request_id].ran
    assert fal_emulator.count("cancel") == 2
    assert fal_emulator.jobs[handle.request_id].cancel_requested
    assert len(fal_emulator.jobs) == 1


async def test_a_submit_whose_connection_drops_after_fal_queued_it_is_not_resent(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    seen = recorder(fal_client)
    fal_emulator.script_faults("submit", "reset")

    with pytest.raises(FalSubmitOutcomeUnknown):
        await fal_client.submit(edit())

    assert fal_emulator.count("submit") == 1
    assert len(fal_emulator.jobs) == 1  # fal has it; nothing was sent twice
    assert len(seen) == 1


@pytest.mark.parametrize("code", [502, 503, 504])
async def test_a_late_ingress_error_on_submit_is_retried_as_documented(
    fal_emulator: FalEmulator, fal_client: FalClient, code: int
) -> None:
    """The ingress answered an error page after fal had queued the submit: the client cannot
    tell this from an ingress that never passed the request on, and retries (the trade-off is
    in docs/fal-queue.md, "The unknown-outcome window"). fal then holds two jobs; each retry is
    reported so operators can see how often it happens."""
    seen = recorder(fal_client)
    fal_emulator.script_faults("submit", f"late_ingress_{code}")

    await finish(fal_client)

    assert fal_emulator.count("submit") == 2
    assert len(fal_emulator.jobs) == 2
    assert seen == [f"ingress_{code}_retried"]


async def test_an_ingress_error_before_fal_saw_the_submit_creates_one_job(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    seen = recorder(fal_client)
    fal_emulator.script_faults("submit", "ingress_502")

    await finish(fal_client)

    assert fal_emulator.count("submit") == 2
    assert len(fal_emulator.jobs) == 1
    assert seen == ["ingress_502_retried"]


@pytest.mark.parametrize("form", ["app", "endpoint", "response"])
async def test_every_url_form_fal_returns_is_followed(fal_emulator: FalEmulator, form: str) -> None:
    fal_emulator.url_form = form
    async with make_fal_client(fal_emulator) as client:
        handle, _ = await client.submit(edit())
        if form == "endpoint":
            assert "/fal-ai/flux-2/lora/edit/requests/" in handle.status_url
        if form == "response":
            assert handle.response_url.endswith("/response")
        await finish(client)
        fal_emulator.queue_delay = 30.0
        queued, _ = await client.submit(edit("to cancel"))
        assert await client.cancel(queued) == "requested"
    assert fal_emulator.jobs[queued.request_id].cancel_requested
    used = {r.path for r in fal_emulator.requests if r.route in ("status", "result", "cancel")}
    assert used and all(p.startswith("/fal-ai/flux-2") for p in used)
    if form == "endpoint":
        assert any(p.startswith("/fal-ai/flux-2/lora/edit/requests/") for p in used)
    if form == "response":
        assert any(p.endswith("/response") for p in used)
