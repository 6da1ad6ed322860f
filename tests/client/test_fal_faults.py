"""Every fault knob of the emulator is either survived by FalClient or reported as its typed
error, and a submit call never reaches fal twice."""

from __future__ import annotations

import socket
from dataclasses import replace

import httpx
import pytest

from client.errors import (
    FalError,
    FalRateLimited,
    FalRequestFailed,
    FalSubmitOutcomeUnknown,
    FalUnavailable,
)
from client.fal import FalClient, RequestHandle
from client.schema import EditInput, QueueStatus
from emulators.fal_emulator import FalEmulator, RecordedRequest, data_uri, make_image
from emulators.fal_emulator.fixtures import FAST_POLL, fast_retry, make_fal_client

IMAGE = data_uri(make_image(), "image/png")


def edit(prompt: str = "fault test") -> EditInput:
    return EditInput(prompt=prompt, image_urls=[IMAGE], seed=1, image_size="square")


async def run_job(client: FalClient, prompt: str = "fault test") -> tuple[RequestHandle, int]:
    handle, _ = await client.submit(edit(prompt))
    statuses: list[QueueStatus] = [status async for status in client.watch(handle)]
    output = await client.result(handle)
    assert statuses[-1].is_completed
    return handle, output.seed


def could_enqueue(record: RecordedRequest) -> bool:
    """fal's server saw the submit and did not refuse it outright."""
    return record.reached_fal and record.status != 429


# -- submit: retried only when fal provably never saw it ----------------------------------------


@pytest.mark.parametrize("fault", ["ingress_502", "ingress_503", "ingress_504", "rate_limit"])
async def test_submit_retries_refusals_that_never_reached_fal(
    fal_emulator: FalEmulator, fal_client: FalClient, fault: str
) -> None:
    fal_emulator.script_faults("submit", fault, fault)

    await run_job(fal_client)

    assert fal_emulator.count("submit") == 3 and len(fal_emulator.jobs) == 1


async def test_submit_gives_up_as_unavailable_when_the_ingress_keeps_failing(
    fal_emulator: FalEmulator,
) -> None:
    fal_emulator.ingress_error_rate = 1.0
    async with make_fal_client(fal_emulator, retry=fast_retry(max_attempts=4)) as client:
        with pytest.raises(FalUnavailable):
            await client.submit(edit())
    assert fal_emulator.count("submit") == 4 and fal_emulator.jobs == {}


async def test_submit_gives_up_as_rate_limited(fal_emulator: FalEmulator) -> None:
    fal_emulator.rate_limit_rate = 1.0
    async with make_fal_client(fal_emulator, retry=fast_retry(max_attempts=3)) as client:
        with pytest.raises(FalRateLimited):
            await client.submit(edit())
    assert fal_emulator.count("submit") == 3 and fal_emulator.jobs == {}


async def test_submit_with_a_slow_answer_is_outcome_unknown_and_not_resent(
    fal_emulator: FalEmulator,
) -> None:
    fal_emulator.slow_response_delay = 2.0
    fal_emulator.script_faults("submit", "slow")
    timeout = httpx.Timeout(5.0, connect=2.0, read=0.3)
    async with make_fal_client(fal_emulator, timeout=timeout) as client:
        with pytest.raises(FalSubmitOutcomeUnknown):
            await client.submit(edit())
        assert client.request_counts["submit"] == 1
    # fal did queue it: resending would have made two paid jobs.
    assert fal_emulator.count("submit") == 1 and len(fal_emulator.jobs) == 1


async def test_submit_whose_connection_drops_after_sending_is_outcome_unknown(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    fal_emulator.script_faults("submit", "reset")

    with pytest.raises(FalSubmitOutcomeUnknown):
        await fal_client.submit(edit())

    assert fal_emulator.count("submit") == 1 and len(fal_emulator.jobs) == 1


async def test_submit_to_a_closed_port_retries_then_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    async with FalClient(base, base, base, "id:secret", retry=fast_retry(3)) as client:
        with pytest.raises(FalUnavailable):
            await client.submit(edit())
        assert client.request_counts["submit"] == 3  # a refused connect provably sent nothing


async def test_one_submit_call_never_reaches_fal_twice_under_mixed_faults(
    fal_emulator: FalEmulator,
) -> None:
    fal_emulator.ingress_error_rate = 0.25
    fal_emulator.rate_limit_rate = 0.15
    fal_emulator.reset_rate = 0.15
    fal_emulator.slow_response_rate = 0.15
    fal_emulator.slow_response_delay = 0.5
    timeout = httpx.Timeout(5.0, connect=2.0, read=0.25)
    outcomes: dict[str, type[Exception] | None] = {}
    async with make_fal_client(fal_emulator, timeout=timeout, retry=fast_retry(4)) as client:
        for index in range(30):
            prompt = f"call {index}"
            try:
                handle, _ = await client.submit(edit(prompt))
            except FalError as error:
                outcomes[prompt] = type(error)
            else:
                outcomes[prompt] = None
                assert [job.request_id for job in fal_emulator.job_by_prompt(prompt)] == [
                    handle.request_id
                ]

    for prompt, outcome in outcomes.items():
        arrivals = [
            r
            for r in fal_emulator.requests_for("submit")
            if could_enqueue(r) and r.json()["prompt"] == prompt
        ]
        assert len(arrivals) <= 1, prompt
        assert len(fal_emulator.job_by_prompt(prompt)) == len(arrivals), prompt
        if outcome in (FalUnavailable, FalRateLimited):
            assert arrivals == []  # gave up only on answers fal's server never sent
    # The seeded mix exercised every branch.
    assert set(outcomes.values()) >= {None, FalSubmitOutcomeUnknown}
    assert sum(1 for r in fal_emulator.requests_for("submit") if not r.reached_fal) > 0


# -- status, stream and result: idempotent, so retried -------------------------------------------


async def test_jobs_complete_through_faults_on_every_idempotent_route(
    fal_emulator: FalEmulator,
) -> None:
    # Every kind on every route once for certain (the first stream breaks, so job 0 polls),
    # then random faults on the routes whose request count does not depend on timing, so
    # the seeded draws, and so the test, are the same on every run.
    fal_emulator.script_faults("stream", "reset")
    fal_emulator.script_faults("status", "ingress", "rate_limit", "reset", "slow")
    fal_emulator.script_faults("result", "ingress", "rate_limit", "reset", "slow")
    fal_emulator.fault_routes = {"result", "token", "cdn_upload", "file"}
    fal_emulator.ingress_error_rate = 0.1
    fal_emulator.rate_limit_rate = 0.05
    fal_emulator.reset_rate = 0.05
    fal_emulator.slow_response_rate = 0.05
    fal_emulator.slow_response_delay = 0.5
    timeout = httpx.Timeout(5.0, connect=2.0, read=0.25)
    async with make_fal_client(fal_emulator, timeout=timeout, retry=fast_retry(8)) as client:
        for index in range(6):
            await run_job(client, f"job {index}")
        url = await client.upload(b"payload", "text/plain", "p.txt")
        assert await client.download(url, max_bytes=100) == b"payload"
    faults = {r.fault for r in fal_emulator.requests if r.fault}
    assert faults >= {"ingress", "rate_limit", "reset", "slow"}


async def test_status_polling_gives_up_as_unavailable(fal_emulator: FalEmulator) -> None:
    fal_emulator.fault_routes = {"status"}
    fal_emulator.ingress_error_rate = 1.0
    poll = replace(FAST_POLL, use_stream=False)
    async with make_fal_client(fal_emulator, poll=poll, retry=fast_retry(3)) as client:
        handle, _ = await client.submit(edit())
        with pytest.raises(FalUnavailable):
            [status async for status in client.watch(handle)]
    assert fal_emulator.count("status") == 3


async def test_result_retries_an_ingress_error(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    fal_emulator.script_faults("result", "ingress_503", "reset")
    await run_job(fal_client)
    assert fal_emulator.count("result") == 3


@pytest.mark.parametrize(
    ("error_type", "status_code"),
    [("runner_disconnected", 503), ("request_timeout", 504), ("runner_server_error", 500)],
)
async def test_runner_failures_are_reported_once_as_transient_request_failures(
    fal_emulator: FalEmulator, fal_client: FalClient, error_type: str, status_code: int
) -> None:
    fal_emulator.runner_failure_rate = 1.0
    fal_emulator.runner_failure_type = error_type
    handle, _ = await fal_client.submit(edit())
    statuses = [status async for status in fal_client.watch(handle)]
    assert statuses[-1].error_type == error_type and statuses[-1].failed

    with pytest.raises(FalRequestFailed) as caught:
        await fal_client.result(handle)
    assert caught.value.error_type == error_type
    assert caught.value.status_code == status_code and caught.value.transient
    # The answer is the request's stored outcome, so asking again would change nothing.
    assert fal_emulator.count("result") == 1


# -- the status stream -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["abort", "eof"])
async def test_a_dropped_stream_falls_back_to_polling_and_completes(
    fal_emulator: FalEmulator, fal_client: FalClient, mode: str
) -> None:
    fal_emulator.queue_delay = 0.1
    fal_emulator.sse_drop_after = 1
    fal_emulator.sse_drop_mode = mode

    handle, _ = await run_job(fal_client)

    assert fal_emulator.count("stream") == 1
    assert len(fal_emulator.requests_for("status", request_id=handle.request_id)) >= 1


async def test_a_silent_stream_falls_back_to_polling_after_the_keepalive_window(
    fal_emulator: FalEmulator,
) -> None:
    fal_emulator.sse_silent = True
    poll = replace(FAST_POLL, sse_silence_timeout=0.2)
    async with make_fal_client(fal_emulator, poll=poll) as client:
        await run_job(client)
    assert fal_emulator.count("stream") == 1
    assert fal_emulator.count("status") >= 1


async def test_pings_keep_a_quiet_stream_alive(fal_emulator: FalEmulator) -> None:
    fal_emulator.sse_ping_interval = 0.05
    fal_emulator.queue_delay = 0.5  # longer than the silence limit, but pinged through
    poll = replace(FAST_POLL, sse_silence_timeout=0.2)
    async with make_fal_client(fal_emulator, poll=poll) as client:
        await run_job(client)
    assert fal_emulator.count("stream") == 1 and fal_emulator.count("status") == 0


async def test_no_stream_endpoint_means_polling(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    fal_emulator.sse_enabled = False
    await run_job(fal_client)
    assert fal_emulator.count("stream") == 1 and fal_emulator.count("status") >= 1
