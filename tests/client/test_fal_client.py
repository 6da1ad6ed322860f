"""FalClient against the fal emulator over real sockets: the happy path, queue positions,
cancel, typed errors, resuming from a stored id, uploads and downloads."""

from __future__ import annotations

import contextlib
import logging

import pytest

from client.errors import (
    FalAccountLocked,
    FalAuthError,
    FalCancelled,
    FalDownloadTooLarge,
    FalNotFound,
    FalResultNotReady,
    FalValidationError,
)
from client.fal import FalClient, RequestHandle
from client.schema import EditInput, QueueStatus
from emulators.fal_emulator import FalEmulator, data_uri, expected_pixel, make_image
from emulators.fal_emulator.fixtures import make_fal_client
from emulators.fal_emulator.images import decode_image

RED = (200, 30, 30)


def edit(image_url: str, **overrides: object) -> EditInput:
    fields: dict[str, object] = {"prompt": "make it pop", "image_urls": [image_url], "seed": 11}
    fields.update(overrides)
    return EditInput.model_validate(fields)


def png_uri(color: tuple[int, int, int] = RED) -> str:
    return data_uri(make_image(color), "image/png")


async def collect(client: FalClient, handle: RequestHandle) -> list[QueueStatus]:
    return [status async for status in client.watch(handle)]


async def test_submit_watch_result_delivers_an_output_made_from_the_input(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    image_url = await fal_client.upload(make_image(RED), "image/png", "red.png")
    request = edit(image_url, image_size="landscape_4_3", output_format="png")

    handle, queued = await fal_client.submit(request)
    assert queued.status == "IN_QUEUE" and queued.request_id == handle.request_id
    statuses = await collect(fal_client, handle)
    output = await fal_client.result(handle)

    assert statuses[-1].is_completed and not statuses[-1].failed
    assert fal_emulator.submissions() == [request.model_dump(exclude_none=True, mode="json")]
    assert output.seed == 11 and output.prompt == "make it pop"
    image = output.images[0]
    assert (image.width, image.height, image.content_type) == (1024, 768, "image/png")
    picture = decode_image(await fal_client.download(image.url, max_bytes=10_000_000))
    assert picture.size == (1024, 768)
    assert picture.getpixel((512, 384)) == expected_pixel(RED, seed=11)
    # One submit, one status stream, one result: the whole job in three requests.
    assert {k: fal_client.request_counts[k] for k in ("submit", "stream", "result")} == {
        "submit": 1,
        "stream": 1,
        "result": 1,
    }
    assert "status" not in fal_client.request_counts
    job_requests = fal_emulator.requests_for(request_id=handle.request_id)
    assert [r.route for r in job_requests] == ["submit", "stream", "result"]


@pytest.mark.parametrize("use_stream", [True, False], ids=["sse", "polling"])
async def test_watch_reports_queue_positions_until_completion(
    fal_emulator: FalEmulator, use_stream: bool
) -> None:
    from dataclasses import replace

    from emulators.fal_emulator.fixtures import FAST_POLL

    fal_emulator.concurrency = 1
    fal_emulator.queue_delay = 0.05
    fal_emulator.run_time = 0.15
    async with make_fal_client(
        fal_emulator, poll=replace(FAST_POLL, use_stream=use_stream, queued_max=0.01)
    ) as client:
        handles = [(await client.submit(edit(png_uri(), prompt=f"p{i}")))[0] for i in range(3)]
        statuses = await collect(client, handles[2])
        for handle in handles[:2]:
            await client.result(handle)

    positions = [s.queue_position for s in statuses if s.is_queued]
    assert positions == [2, 1, 0]
    assert [s.status for s in statuses if not s.is_queued] == ["IN_PROGRESS", "COMPLETED"]
    assert fal_emulator.count("stream") == (1 if use_stream else 0)


async def test_cancel_while_queued_means_it_never_runs(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    fal_emulator.queue_delay = 30.0
    handle, _ = await fal_client.submit(edit(png_uri()))

    assert await fal_client.cancel(handle) == "requested"
    statuses = await collect(fal_client, handle)

    assert statuses[-1].error_type == "client_cancelled"
    with pytest.raises(FalCancelled) as caught:
        await fal_client.result(handle)
    assert caught.value.status_code == 499 and not caught.value.transient
    assert not fal_emulator.jobs[handle.request_id].ran


async def test_cancel_while_running_stops_the_runner(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    fal_emulator.run_time = 30.0
    handle, _ = await fal_client.submit(edit(png_uri()))
    await fal_emulator.wait_for_status(handle.request_id, "IN_PROGRESS")

    assert await fal_client.cancel(handle) == "requested"

    with pytest.raises(FalCancelled):
        async for status in fal_client.watch(handle):
            if status.is_completed:
                await fal_client.result(handle)
    assert fal_emulator.jobs[handle.request_id].ran


async def test_cancel_after_completion_and_of_an_unknown_request(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    handle, _ = await fal_client.submit(edit(png_uri()))
    await collect(fal_client, handle)
    assert await fal_client.cancel(handle) == "already_completed"
    assert await fal_client.cancel(fal_client.handle_for("no-such-request")) == "not_found"
    with pytest.raises(FalNotFound):
        await fal_client.status(fal_client.handle_for("no-such-request"))


async def test_invalid_input_surfaces_as_a_validation_error_naming_the_field(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    # Our own model refuses 25, so build the input past it, as an older pin of ours might.
    bad = EditInput.model_construct(**{**edit(png_uri()).model_dump(), "guidance_scale": 25.0})
    handle, _ = await fal_client.submit(bad)
    statuses = await collect(fal_client, handle)
    assert statuses[-1].is_completed and not statuses[-1].failed  # fal's trap: looks fine

    with pytest.raises(FalValidationError) as caught:
        await fal_client.result(handle)
    assert caught.value.fields == ["guidance_scale"]
    assert caught.value.describe() == "guidance_scale: Input should be ≤ 20"
    assert "guidance_scale" in str(caught.value)


async def test_an_input_fal_cannot_download_names_the_image(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    missing = f"{fal_emulator.cdn_url}/files/gone/missing.png"
    handle, _ = await fal_client.submit(edit(png_uri(), image_urls=[png_uri(), missing]))
    await collect(fal_client, handle)
    with pytest.raises(FalValidationError) as caught:
        await fal_client.result(handle)
    assert caught.value.items[0].type == "file_download_error"
    assert caught.value.describe().startswith("image_urls[1]: Failed to download the file")


async def test_a_wrong_key_is_an_auth_error_that_never_shows_the_key(
    fal_emulator: FalEmulator,
) -> None:
    async with make_fal_client(fal_emulator, key="wrongid:wrongsecret") as client:
        with pytest.raises(FalAuthError) as caught:
            await client.submit(edit(png_uri()))
    assert caught.value.status_code == 401
    assert "wrongsecret" not in str(caught.value) and "wrongsecret" not in repr(client)
    assert fal_emulator.jobs == {}
    assert fal_emulator.count("submit") == 1  # a 401 is final, not retried


async def test_a_locked_account_reports_fal_reason(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    handle, _ = await fal_client.submit(edit(png_uri()))
    fal_emulator.locked_reason = (
        "Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
    )

    with pytest.raises(FalAccountLocked) as caught:
        await fal_client.submit(edit(png_uri()))
    assert caught.value.reason.startswith("Exhausted balance.")
    assert str(caught.value).startswith("The fal account is locked: Exhausted balance.")
    # fal still answers status and result for work already queued.
    await collect(fal_client, handle)
    assert (await fal_client.result(handle)).seed == 11


async def test_result_asked_too_early_is_not_ready_not_a_failure(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    fal_emulator.queue_delay = 30.0
    handle, _ = await fal_client.submit(edit(png_uri()))
    with pytest.raises(FalResultNotReady):
        await fal_client.result(handle)
    assert fal_emulator.count("result") == 1  # no retries of a clear answer


async def test_a_restarted_process_resumes_from_the_stored_request_id(
    fal_emulator: FalEmulator,
) -> None:
    fal_emulator.queue_delay = 0.1
    async with make_fal_client(fal_emulator) as first:
        handle, _ = await first.submit(edit(png_uri(), num_images=2))
    stored = handle.request_id  # all the bot keeps across the restart

    async with make_fal_client(fal_emulator) as second:
        resumed = second.handle_for(stored)
        assert resumed == handle  # rebuilt URLs are the ones fal returned
        statuses = await collect(second, resumed)
        output = await second.result(resumed)
    assert statuses[-1].is_completed and len(output.images) == 2


async def test_start_timeout_is_sent_and_its_expiry_is_final(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    from client.errors import FalRequestFailed

    fal_emulator.queue_delay = 30.0
    handle, _ = await fal_client.submit(edit(png_uri()), start_timeout=1.5)
    sent = fal_emulator.requests_for("submit")[0].headers
    assert sent["X-Fal-Request-Timeout"] == sent["X-Fal-Request-Start-Timeout"] == "1.5"
    statuses = await collect(fal_client, handle)
    assert statuses[-1].error_type == "startup_timeout"

    with pytest.raises(FalRequestFailed) as caught:
        await fal_client.result(handle)
    assert caught.value.timeout_type == "user" and not caught.value.transient
    assert fal_emulator.count("result") == 1  # a user-timeout 504 is never retried


async def test_upload_returns_a_url_the_emulator_serves_and_reuses_the_token(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    first = await fal_client.upload(b"first bytes", "text/plain", "first.txt")
    second = await fal_client.upload(make_image(), "image/png", "second.png")

    assert await fal_client.download(first, max_bytes=1000) == b"first bytes"
    assert await fal_client.download(second, max_bytes=100_000) == make_image()
    assert first.endswith("/first.txt") and first.startswith(fal_emulator.cdn_url)
    assert fal_emulator.count("token") == 1 and fal_emulator.count("cdn_upload") == 2
    # The key goes to the REST host only; the CDN sees the token, downloads see nothing.
    schemes = {r.route: r.auth_scheme for r in fal_emulator.requests}
    assert schemes == {"token": "Key", "cdn_upload": "Bearer", "file": None}


async def test_upload_falls_back_to_initiate_and_put_when_the_cdn_fails(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    fal_emulator.script_faults("cdn_upload", *["ingress_503"] * 5)

    url = await fal_client.upload(b"via fallback", "application/octet-stream", "f.bin")

    assert await fal_client.download(url, max_bytes=1000) == b"via fallback"
    assert fal_emulator.count("cdn_upload") == 5
    assert fal_emulator.count("initiate") == 1 and fal_emulator.count("signed_put") == 1
    assert fal_emulator.requests_for("signed_put")[0].auth_scheme is None


async def test_upload_with_a_rejected_key_does_not_fall_back(fal_emulator: FalEmulator) -> None:
    async with make_fal_client(fal_emulator, key="bad:key-value") as client:
        with pytest.raises(FalAuthError):
            await client.upload(b"x", "text/plain", "x.txt")
    assert fal_emulator.count("initiate") == 0


async def test_sync_mode_data_uri_downloads_and_size_limits(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    handle, _ = await fal_client.submit(edit(png_uri(), sync_mode=True, image_size="square"))
    await collect(fal_client, handle)
    output = await fal_client.result(handle)
    url = output.images[0].url
    assert url.startswith("data:image/png;base64,")
    data = await fal_client.download(url, max_bytes=10_000_000)
    assert decode_image(data).size == (512, 512)
    with pytest.raises(FalDownloadTooLarge):
        await fal_client.download(url, max_bytes=100)
    cdn_url = await fal_client.upload(b"x" * 5000, "application/octet-stream", "big.bin")
    with pytest.raises(FalDownloadTooLarge):
        await fal_client.download(cdn_url, max_bytes=4999)


async def test_nothing_logged_or_raised_contains_the_key(
    fal_emulator: FalEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = fal_emulator.key.split(":")[1]
    fal_emulator.ingress_error_rate = 0.5
    fal_emulator.runner_failure_rate = 1.0
    errors: list[str] = []
    async with make_fal_client(fal_emulator) as client:
        for _ in range(3):
            try:
                handle, _ = await client.submit(edit(png_uri()))
                await collect(client, handle)
                await client.result(handle)
            except Exception as error:
                errors.append(f"{error} {error!r}")
        with contextlib.suppress(Exception):
            await client.upload(b"x", "text/plain", "x.txt")
    assert errors  # the runner failures at least
    assert secret not in caplog.text
    assert all(secret not in text for text in errors)


@pytest.mark.parametrize("use_stream", [True, False], ids=["sse", "polling"])
async def test_watch_with_logs_yields_each_log_line_once(
    fal_emulator: FalEmulator, use_stream: bool
) -> None:
    from dataclasses import replace

    from emulators.fal_emulator.fixtures import FAST_POLL

    fal_emulator.run_time = 0.1
    poll = replace(FAST_POLL, use_stream=use_stream, running_max=0.01)
    async with make_fal_client(fal_emulator, poll=poll) as client:
        handle, _ = await client.submit(edit(png_uri()))
        messages = [
            entry.message
            async for status in client.watch(handle, logs=True)
            for entry in status.logs or []
        ]
    # fal's log window repeats earlier lines in every answer; the watcher drops repeats.
    assert messages == ["Loading LoRA weights", "Generating image...", "Done."]
