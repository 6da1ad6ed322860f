"""Queue host routes: submit, status, status stream, result, cancel (docs/fal-queue.md,
"Submit" to "Cancel").

Paths are parsed by hand so every form fal may serve works: `owner/app/requests/{id}...` and
the full endpoint path, `/response` on the result, and a trailing slash anywhere
(docs/fal-queue.md, "URLs and request ids").
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emulators.fal_emulator import runner
from emulators.fal_emulator.common import Handler, RecordedRequest, method_not_allowed, not_found
from emulators.fal_emulator.jobs import COMPLETED, IN_PROGRESS, IN_QUEUE, Job

if TYPE_CHECKING:
    from emulators.fal_emulator.server import FalEmulator

_LOGS_TRUE = {"1", "true", "yes", "on"}
_LOGS_FALSE = {"0", "false", "no", "off", ""}


def app_path(endpoint: str) -> str:
    return "/".join(endpoint.split("/")[:2])


def route(emu: FalEmulator, method: str, path: str) -> tuple[str, Handler]:
    segments = [segment for segment in path.split("/") if segment]
    k = next((i for i in range(2, len(segments)) if segments[i] == "requests"), None)
    if k is None:
        if method == "POST":
            return "submit", functools.partial(submit, emu)
        return "unknown", method_not_allowed if "/".join(segments) in emu.endpoints else not_found
    tail = segments[k + 2 :]
    if len(segments) < k + 2:
        return "unknown", not_found
    wanted: dict[tuple[str, ...], tuple[str, str, Handler]] = {
        (): ("result", "GET", functools.partial(result, emu)),
        ("response",): ("result", "GET", functools.partial(result, emu)),
        ("status",): ("status", "GET", functools.partial(status, emu)),
        ("status", "stream"): ("stream", "GET", functools.partial(stream, emu)),
        ("cancel",): ("cancel", "PUT", functools.partial(cancel, emu)),
    }
    match = wanted.get(tuple(tail))
    if match is None:
        return "unknown", not_found
    name, allowed, handler = match
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        return name, method_not_allowed
    return name, handler


def _locate(emu: FalEmulator, request: web.Request) -> tuple[Job | None, str]:
    segments = [segment for segment in request.path.split("/") if segment]
    k = next(i for i in range(2, len(segments)) if segments[i] == "requests")
    prefix = "/".join(segments[:k])
    request_id = segments[k + 1]
    job = emu.jobs.get(request_id)
    if job is None or prefix not in (job.app_path, job.endpoint):
        return None, request_id
    return job, request_id


def urls(emu: FalEmulator, job: Job) -> dict[str, str]:
    """The URLs fal returns, in the form the emulator is set to (fal has used all three)."""
    prefix = job.endpoint if emu.url_form == "endpoint" else job.app_path
    base = f"{emu.queue_url}/{prefix}/requests/{job.request_id}"
    response = f"{base}/response" if emu.url_form == "response" else base
    return {
        "response_url": response,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
    }


def status_body(emu: FalEmulator, job: Job, with_logs: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"status": job.status, "request_id": job.request_id, **urls(emu, job)}
    # The logs key is always there: null when not asked for (a client trap).
    body["logs"] = job.logs[-emu.log_window :] if with_logs else None
    if job.status == IN_QUEUE:
        body["queue_position"] = emu.queue.position(job)
    if job.status == COMPLETED:
        body["metrics"] = dict(job.metrics)
        if job.error_type is not None:
            body["error"] = job.error
            body["error_type"] = job.error_type
    return body


def _parse_logs(request: web.Request) -> bool | None:
    value = request.query.get("logs", "").strip().lower()
    if value in _LOGS_TRUE:
        return True
    if value in _LOGS_FALSE:
        return False
    return None


def _bad_logs(emu: FalEmulator, request: web.Request) -> web.Response:
    return emu.error_json(
        422,
        {
            "detail": [
                {
                    "type": "bool_parsing",
                    "loc": ["query", "logs"],
                    "msg": "Input should be a valid boolean, unable to interpret input",
                    "input": request.query.get("logs"),
                }
            ]
        },
    )


def _unknown_request(emu: FalEmulator) -> web.Response:
    return emu.error_json(404, {"detail": "Request not found"})


async def submit(emu: FalEmulator, request: web.Request, record: RecordedRequest) -> web.Response:
    denied = emu.check_key(request, storage_or_submit=True)
    if denied is not None:
        return denied
    endpoint = "/".join(segment for segment in request.path.split("/") if segment)
    if endpoint not in emu.endpoints:
        return emu.error_json(404, {"detail": f"Application '{endpoint}' not found"})

    raw_timeout = request.headers.get("X-Fal-Request-Start-Timeout") or request.headers.get(
        "X-Fal-Request-Timeout"
    )
    start_timeout: float | None = None
    if raw_timeout is not None:
        try:
            start_timeout = float(raw_timeout)
        except ValueError:
            start_timeout = -1.0
        if start_timeout <= 0.1:
            return emu.error_json(
                400,
                {"detail": "Invalid request timeout header", "error_type": "bad_request"},
            )
    priority_name = request.headers.get("X-Fal-Queue-Priority", "normal").strip().lower()
    if priority_name not in ("normal", "low"):
        return emu.error_json(
            400, {"detail": "Invalid X-Fal-Queue-Priority", "error_type": "bad_request"}
        )
    max_length = request.query.get("fal_max_queue_length")
    if max_length is not None:
        try:
            limit = int(max_length)
        except ValueError:
            return emu.error_json(
                422,
                {
                    "detail": [
                        {
                            "type": "int_parsing",
                            "loc": ["query", "fal_max_queue_length"],
                            "msg": "Input should be a valid integer",
                            "input": max_length,
                        }
                    ]
                },
            )
        if emu.queue.waiting > limit:
            return emu.error_json(
                429, {"detail": "Maximum queue length exceeded", "error_type": "queue_full"}
            )
    try:
        body = json.loads(record.body) if record.body else None
    except ValueError:
        return emu.error_json(
            422,
            {"detail": [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}]},
        )
    if not isinstance(body, dict):
        return emu.error_json(
            422,
            {
                "detail": [
                    {
                        "type": "dict_type",
                        "loc": ["body"],
                        "msg": "Input should be a valid dictionary",
                        "input": body,
                    }
                ]
            },
        )
    # Any JSON object is accepted here: validation happens "on the runner".
    job = runner.start_job(
        emu,
        endpoint=endpoint,
        app_path=app_path(endpoint),
        body=body,
        priority=1 if priority_name == "low" else 0,
        start_timeout=start_timeout,
        headers={k: v for k, v in request.headers.items() if k.lower().startswith("x-fal-")},
        webhook_url=request.query.get("fal_webhook") or None,
    )
    record.request_id = job.request_id
    return web.json_response(
        {
            "status": IN_QUEUE,
            "request_id": job.request_id,
            **urls(emu, job),
            "queue_position": emu.queue.position(job),
        },
        headers={"x-fal-request-id": job.request_id},
    )


async def status(emu: FalEmulator, request: web.Request, record: RecordedRequest) -> web.Response:
    denied = emu.check_key(request, storage_or_submit=False)
    if denied is not None:
        return denied
    job, record.request_id = _locate(emu, request)
    if job is None:
        return _unknown_request(emu)
    with_logs = _parse_logs(request)
    if with_logs is None:
        return _bad_logs(emu, request)
    return web.json_response(
        status_body(emu, job, with_logs),
        status=200 if job.status == COMPLETED else 202,
        headers={"x-fal-request-id": job.request_id},
    )


def _snapshot(emu: FalEmulator, job: Job) -> tuple[Any, ...]:
    position = emu.queue.position(job) if job.status == IN_QUEUE else None
    return job.status, position, len(job.logs)


async def stream(
    emu: FalEmulator, request: web.Request, record: RecordedRequest
) -> web.StreamResponse:
    denied = emu.check_key(request, storage_or_submit=False)
    if denied is not None:
        return denied
    job, record.request_id = _locate(emu, request)
    if job is None:
        return _unknown_request(emu)
    if not emu.sse_enabled:
        return emu.error_json(404, {"detail": f"Path {request.path} not found"})
    with_logs = _parse_logs(request)
    if with_logs is None:
        return _bad_logs(emu, request)

    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "x-fal-request-id": job.request_id,
        },
    )
    await response.prepare(request)
    emu.track_stream(request, True)
    try:
        if emu.sse_silent:
            # A stream that a proxy swallows: open, then nothing at all, not even pings.
            await asyncio.sleep(3600)
            return response
        sent = 0
        last: tuple[Any, ...] | None = None
        drop_after = emu.sse_drop_after
        if emu.sse_drop_rate > 0 and emu.rng.random() < emu.sse_drop_rate:
            drop_after = 1  # this stream breaks after its first event
        while True:
            changed = job.changed  # taken before the snapshot, so no change slips between
            snapshot = _snapshot(emu, job)
            if snapshot != last:
                if drop_after is not None and sent >= drop_after:
                    if emu.sse_drop_mode == "abort" and request.transport is not None:
                        request.transport.abort()
                    return response
                event = json.dumps(status_body(emu, job, with_logs))
                await response.write(f"data: {event}\n\n".encode())
                sent += 1
                last = snapshot
                if job.status == COMPLETED:
                    break  # fal closes the stream after COMPLETED
            try:
                async with asyncio.timeout(emu.sse_ping_interval):
                    await changed.wait()
            except TimeoutError:
                await response.write(b": ping\n\n")
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        emu.track_stream(request, False)
    return response


async def result(emu: FalEmulator, request: web.Request, record: RecordedRequest) -> web.Response:
    denied = emu.check_key(request, storage_or_submit=False)
    if denied is not None:
        return denied
    job, record.request_id = _locate(emu, request)
    if job is None:
        return _unknown_request(emu)
    if job.status != COMPLETED:
        return emu.error_json(
            emu.early_result_status,
            {"detail": "Request is still in progress"},
            headers={"x-fal-request-id": job.request_id},
        )
    assert job.completed_at is not None
    if time.monotonic() - job.completed_at > emu.result_ttl:
        return _unknown_request(emu)
    headers = {"x-fal-request-id": job.request_id, **job.result_headers}
    return web.json_response(job.result_body, status=job.result_status or 200, headers=headers)


async def cancel(emu: FalEmulator, request: web.Request, record: RecordedRequest) -> web.Response:
    denied = emu.check_key(request, storage_or_submit=False)
    if denied is not None:
        return denied
    job, record.request_id = _locate(emu, request)
    if job is None:
        return web.json_response({"status": "NOT_FOUND"}, status=404)
    if job.status == COMPLETED:
        return web.json_response(
            {"status": "ALREADY_COMPLETED"},
            status=400,
            headers={"x-fal-request-id": job.request_id},
        )
    headers = {"x-fal-request-id": job.request_id}
    if job.status == IN_QUEUE:
        runner.cancel_job(job)
        if emu.cancel_queued_ok:
            return web.json_response({"status": "OK"}, headers=headers)
    elif job.status == IN_PROGRESS:
        job.cancel_requested = True
        if emu.honour_cancel_in_progress:
            runner.cancel_job(job)
    return web.json_response({"status": "CANCELLATION_REQUESTED"}, status=202, headers=headers)
