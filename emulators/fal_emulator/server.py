"""`FalEmulator`: fal's queue, REST and CDN hosts on 127.0.0.1, as docs/fal-queue.md describes
them, with knobs for latency and faults and a record of every request (see README.md here).

    async with FalEmulator() as fal:
        client = FalClient(fal.queue_url, fal.rest_url, fal.cdn_url, fal.key)
        ...
        job = await fal.wait_for_status(request_id, "COMPLETED")

By default the three hosts listen on three ports, so a client that sends a call to the wrong
base URL fails as it would against fal. Knobs are plain attributes, read when they apply:
change them at any time. Random faults draw from one RNG seeded by `seed`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import ClientSession, web

from emulators.fal_emulator import queue_api, storage_api, webhooks
from emulators.fal_emulator.common import (
    REQUEST_ERRORS,
    CdnToken,
    Handler,
    PendingUpload,
    RecordedRequest,
    StoredFile,
    ingress_response,
    not_found,
)
from emulators.fal_emulator.jobs import COMPLETED, Job, JobQueue
from emulators.fal_emulator.trainer import TRAINER_ENDPOINTS
from emulators.fal_emulator.webhooks import WEBHOOK_FAULTS, WebhookAttempt, WebhookKeys

DEFAULT_ENDPOINTS = ("fal-ai/flux-2/lora/edit", *TRAINER_ENDPOINTS)

FAULT_KINDS = (
    "ingress",
    "ingress_502",
    "ingress_503",
    "ingress_504",
    "rate_limit",
    "reset",
    "slow",
    # The request is handled (a submit is enqueued), then the answer is lost or replaced:
    "late_ingress",
    "late_ingress_502",
    "late_ingress_503",
    "late_ingress_504",
    "server_error",
)
URL_FORMS = ("app", "endpoint", "response")

# Knobs the standalone control route may set (name → type).
KNOBS: dict[str, type] = {
    "queue_delay": float,
    "run_time": float,
    "training_time": float,
    "concurrency": int,
    "paused": bool,
    "ingress_error_rate": float,
    "rate_limit_rate": float,
    "reset_rate": float,
    "slow_response_rate": float,
    "slow_response_delay": float,
    "late_ingress_rate": float,
    "server_error_rate": float,
    "url_form": str,
    "runner_failure_rate": float,
    "runner_failure_type": str,
    "sse_enabled": bool,
    "sse_drop_after": int,
    "sse_drop_rate": float,
    "sse_drop_mode": str,
    "sse_silent": bool,
    "sse_ping_interval": float,
    "locked_reason": str,
    "early_result_status": int,
    "result_ttl": float,
    "honour_cancel_in_progress": bool,
    "cancel_queued_ok": bool,
    "token_ttl": float,
    "webhook_delay": float,
    "webhook_timeout": float,
    "webhook_backoff": float,
    "webhook_backoff_max": float,
    "webhook_max_attempts": int,
    "webhook_duplicates": int,
    "webhook_drop": bool,
    "webhook_fault": str,
}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class FalEmulator:
    def __init__(
        self,
        *,
        seed: int = 0,
        key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        rest_port: int = 0,
        cdn_port: int = 0,
        single_port: bool = False,
        endpoints: Iterable[str] = DEFAULT_ENDPOINTS,
        queue_delay: float = 0.0,
        run_time: float = 0.05,
        concurrency: int = 10,
    ) -> None:
        self.rng = random.Random(seed)
        self.key = (
            key or f"{uuid.UUID(int=self.rng.getrandbits(128)).hex[:12]}:{secrets.token_hex(16)}"
        )
        self._host = host
        self._ports = (port, rest_port, cdn_port)
        self._single_port = single_port
        self.endpoints = tuple(endpoints)

        # -- knobs: the queue --
        self.queue_delay = queue_delay  # seconds before a runner may pick a request up
        self.run_time = run_time  # seconds a runner works on a request
        self.training_time = 0.2  # seconds the edit trainer works on a training
        self.queue = JobQueue(concurrency)
        # -- knobs: transport faults (one draw per request, in this order) --
        self.ingress_error_rate = 0.0  # nginx-style 502/503/504, HTML, no x-fal-request-id
        self.ingress_statuses: tuple[int, ...] = (502, 503, 504)
        self.rate_limit_rate = 0.0  # 429 before the handler runs
        self.reset_rate = 0.0  # connection closed with no answer, after the handler ran
        self.slow_response_rate = 0.0  # answer delayed by slow_response_delay, after handling
        self.slow_response_delay = 1.0
        # After the handler ran (a submit is queued and will run): an nginx page without
        # x-fal-request-id, as when the ingress loses the upstream's answer …
        self.late_ingress_rate = 0.0
        # … or fal's own JSON 500, which carries the request's id.
        self.server_error_rate = 0.0
        # The URLs submit and status answers give: "app" (owner/app/requests/{id}),
        # "endpoint" (the full endpoint path) or "response" (owner/app, result at …/response).
        self.url_form = "app"
        self.fault_routes: set[str] | None = None  # None: every route may fault
        self._scripted: dict[str, collections.deque[str]] = collections.defaultdict(
            collections.deque
        )
        # -- knobs: runner failures, decided when a runner picks the request up --
        self.runner_failure_rate = 0.0
        self.runner_failure_type = "runner_disconnected"
        # fail exactly the requests whose body this picks (say, one LoRA scale of several)
        self.runner_failure_when: Callable[[Any], bool] | None = None
        # -- knobs: SSE --
        self.sse_enabled = True
        self.sse_drop_after: int | None = None  # drop the stream after this many events
        self.sse_drop_rate = 0.0  # each stream, with this chance, drops after its first event
        self.sse_drop_mode = "abort"  # "abort": connection reset; "eof": clean end
        self.sse_silent = False  # open the stream, then never send an event or a ping
        self.sse_ping_interval = 15.0
        # -- knobs: accounts, results, cancel, storage --
        self.locked_reason: str | None = None  # 403 on submit and storage when set
        self.early_result_status = 400
        self.result_ttl = 3600.0
        self.honour_cancel_in_progress = True
        self.cancel_queued_ok = False  # answer 200 {"status": "OK"} for a queued request
        self.token_ttl = 3600.0
        self.max_input_images = 4  # more are cut, as the description says
        self.nsfw_marker = "[nsfw]"
        self.log_window = 20
        # -- knobs: webhooks (docs/fal-webhooks.md) --
        self.webhook_delay = 0.0  # seconds between the end of a request and its first delivery
        self.webhook_timeout = 15.0  # seconds an attempt waits for the receiver's answer
        self.webhook_backoff = 1.0  # first retry after this many seconds, doubling each time …
        self.webhook_backoff_max = 1800.0  # … up to this
        self.webhook_max_attempts = 11  # the first attempt and fal's 10 retries
        self.webhook_duplicates = 0  # extra copies sent after a delivery was accepted
        self.webhook_drop = False  # never deliver
        self.webhook_fault: str | None = None  # one of webhooks.WEBHOOK_FAULTS, on every attempt
        self.webhook_keys = WebhookKeys()
        self.user_id = uuid.UUID(int=self.rng.getrandbits(128)).hex[:20]
        # Wall clock of the webhook timestamps (a test may share a fake clock with the receiver).
        self.clock: Callable[[], float] = time.time

        # -- state --
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[str, Job] = {}
        self.files: dict[str, StoredFile] = {}
        self.tokens: dict[str, CdnToken] = {}
        self.pending_uploads: dict[str, PendingUpload] = {}
        self.webhook_attempts: list[WebhookAttempt] = []
        self.webhook_tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._runners: list[web.AppRunner] = []
        self._streams: set[asyncio.BaseTransport] = set()
        self._session: ClientSession | None = None
        self.queue_url = self.rest_url = self.cdn_url = ""

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> FalEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._single_port:
            url = await self._serve({"queue", "rest", "cdn"}, self._ports[0])
            self.queue_url = self.rest_url = self.cdn_url = url
        else:
            self.queue_url = await self._serve({"queue"}, self._ports[0])
            self.rest_url = await self._serve({"rest"}, self._ports[1])
            self.cdn_url = await self._serve({"cdn"}, self._ports[2])

    async def _serve(self, roles: set[str], port: int) -> str:
        async def entry(request: web.Request) -> web.StreamResponse:
            return await self._entry(request, roles)

        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", entry)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, self._host, port)
        await site.start()
        self._runners.append(runner)
        bound = runner.addresses[0][1]
        return f"http://{self._host}:{bound}"

    async def stop(self) -> None:
        for job in self.jobs.values():
            if job.task is not None and not job.task.done():
                job.task.cancel()
        tasks = [job.task for job in self.jobs.values() if job.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        # After the jobs: a job cancelled on the way out may still have scheduled a delivery.
        deliveries = list(self.webhook_tasks)
        for task in deliveries:
            task.cancel()
        await asyncio.gather(*deliveries, return_exceptions=True)
        for transport in list(self._streams):
            transport.close()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self._session is not None:
            await self._session.close()

    # -- knobs ----------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Hold every request in the queue (load tests: all in flight at once); set False to
        let the runners start."""
        return self.queue.paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self.queue.paused = value

    @property
    def concurrency(self) -> int:
        return self.queue.concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        self.queue.concurrency = value

    def script_faults(self, route: str, *kinds: str) -> None:
        """Make the next requests to `route` fail in this order ('ok' lets one through).
        Kinds: ingress, ingress_502, ingress_503, ingress_504, rate_limit, reset, slow."""
        for kind in kinds:
            if kind != "ok" and kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}")
            self._scripted[route].append(kind)

    def set_knobs(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            kind = KNOBS.get(name)
            if kind is None:
                raise ValueError(f"unknown knob {name!r}")
            if name == "webhook_fault" and value is not None and value not in WEBHOOK_FAULTS:
                raise ValueError(f"unknown webhook fault {value!r}")
            if value is None:
                setattr(self, name, None)
            elif kind is bool:
                setattr(self, name, _bool(value))
            else:
                setattr(self, name, kind(value))

    # -- what tests read ------------------------------------------------------------------------

    def submissions(self) -> list[Any]:
        """The input bodies of every request that was queued, in arrival order."""
        return [job.body for job in sorted(self.jobs.values(), key=lambda job: job.seq)]

    def requests_for(
        self, route: str | None = None, *, request_id: str | None = None
    ) -> list[RecordedRequest]:
        return [
            record
            for record in self.requests
            if (route is None or record.route == route)
            and (request_id is None or record.request_id == request_id)
        ]

    def count(self, route: str | None = None) -> int:
        return len(self.requests_for(route))

    def webhook_attempts_for(self, request_id: str) -> list[WebhookAttempt]:
        return [attempt for attempt in self.webhook_attempts if attempt.request_id == request_id]

    def rotate_webhook_key(self) -> str:
        """Start signing with a new key; the JWKS publishes it beside the old one (until
        `webhook_keys.retire_old()`). Returns the new key's id."""
        return self.webhook_keys.rotate().kid

    def job_by_prompt(self, prompt: str) -> list[Job]:
        return [
            job
            for job in self.jobs.values()
            if isinstance(job.body, dict) and job.body.get("prompt") == prompt
        ]

    # -- waiting without sleeping ---------------------------------------------------------------

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def job_changed(self, job: Job) -> None:
        job.touch()
        self.notify()

    @property
    def changed(self) -> asyncio.Event:
        """An event set at the next change of any job or the next request."""
        return self._changed

    async def wait_until(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                await self._changed.wait()

    async def wait_for_status(self, request_id: str, status: str, within: float = 10.0) -> Job:
        """Wait until the job has reached `status` (or a later state)."""
        order = {"IN_QUEUE": 0, "IN_PROGRESS": 1, COMPLETED: 2}

        def reached() -> bool:
            job = self.jobs.get(request_id)
            return job is not None and order[job.status] >= order[status]

        await self.wait_until(reached, within)
        return self.jobs[request_id]

    async def wait_for_jobs(self, count: int, within: float = 10.0) -> list[Job]:
        await self.wait_until(lambda: len(self.jobs) >= count, within)
        return sorted(self.jobs.values(), key=lambda job: job.seq)

    async def wait_for_webhook_attempts(
        self, request_id: str, count: int, within: float = 10.0
    ) -> list[WebhookAttempt]:
        """Wait until `count` attempts to deliver `request_id`'s webhook have been answered
        (or have failed without an answer)."""

        def done() -> list[WebhookAttempt]:
            return [
                attempt
                for attempt in self.webhook_attempts_for(request_id)
                if attempt.status is not None or attempt.error is not None
            ]

        await self.wait_until(lambda: len(done()) >= count, within)
        return done()

    def webhook_idle(self) -> bool:
        """No delivery is pending or under way."""
        return not self.webhook_tasks

    # -- request entry --------------------------------------------------------------------------

    async def _entry(self, request: web.Request, roles: set[str]) -> web.StreamResponse:
        if "queue" in roles and request.path.startswith("/_emulator/"):
            return await self._control(request)
        host = "queue" if "queue" in roles else ("rest" if "rest" in roles else "cdn")
        route, handler = self._route(roles, request)
        body = await request.read()
        authorization = request.headers.get("Authorization")
        record = RecordedRequest(
            seq=len(self.requests),
            at=time.monotonic(),
            host=host,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k: v for k, v in request.headers.items() if k.lower() != "authorization"},
            auth_scheme=authorization.split(" ", 1)[0] if authorization else None,
            body=body,
            route=route,
        )
        self.requests.append(record)
        self.notify()

        fault = self._pick_fault(route)
        record.fault = fault
        if fault is not None and fault.startswith("ingress"):
            code = (
                int(fault[-3:]) if fault[-1].isdigit() else self.rng.choice(self.ingress_statuses)
            )
            record.status = code
            return ingress_response(code)
        if fault == "rate_limit":
            record.status = 429
            return self.error_json(
                429, {"detail": "Too many requests", "error_type": "rate_limited"}
            )
        if fault == "server_error" and route == "stream":
            # A stream is answered as it runs, so its server error comes before the first byte.
            segments = request.path.split("/")
            request_id = segments[segments.index("requests") + 1]
            record.status = 500
            return web.json_response(
                {"detail": "Internal Server Error"},
                status=500,
                headers={"x-fal-request-id": request_id},
            )
        if fault == "reset" and route == "stream":
            return self._reset(request, web.Response(status=200))
        if fault == "slow" and route == "stream":
            await asyncio.sleep(self.slow_response_delay)

        response = await handler(request, record)
        if not response.prepared and "x-fal-request-id" not in response.headers:
            response.headers["x-fal-request-id"] = record.request_id or str(uuid.uuid4())
        record.status = response.status
        self.notify()
        if fault == "slow" and route != "stream":
            await asyncio.sleep(self.slow_response_delay)
        if fault == "reset":
            return self._reset(request, response)
        if fault is not None and fault.startswith("late_ingress") and not response.prepared:
            code = (
                int(fault[-3:]) if fault[-1].isdigit() else self.rng.choice(self.ingress_statuses)
            )
            record.status = code
            return ingress_response(code)
        if fault == "server_error" and not response.prepared:
            record.status = 500
            return web.json_response(
                {"detail": "Internal Server Error"},
                status=500,
                headers={"x-fal-request-id": response.headers["x-fal-request-id"]},
            )
        return response

    @staticmethod
    def _reset(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        # Closing the socket before the answer: aiohttp's write then fails quietly.
        if request.transport is not None:
            request.transport.abort()
        return response

    def _pick_fault(self, route: str) -> str | None:
        scripted = self._scripted.get(route)
        if scripted:
            kind = scripted.popleft()
            return None if kind == "ok" else kind
        if self.fault_routes is not None and route not in self.fault_routes:
            return None
        for kind, rate in (
            ("ingress", self.ingress_error_rate),
            ("rate_limit", self.rate_limit_rate),
            ("reset", self.reset_rate),
            ("slow", self.slow_response_rate),
            ("late_ingress", self.late_ingress_rate),
            ("server_error", self.server_error_rate),
        ):
            if rate > 0 and self.rng.random() < rate:
                return kind
        return None

    def _route(self, roles: set[str], request: web.Request) -> tuple[str, Handler]:
        path, method = request.path, request.method
        if "rest" in roles and path.rstrip("/") == webhooks.JWKS_PATH:
            return "jwks", functools.partial(webhooks.jwks, self)
        if "rest" in roles and path.startswith("/storage/"):
            return storage_api.route_rest(self, method, path)
        if "cdn" in roles and (path.startswith("/files/") or path.startswith("/upload/")):
            return storage_api.route_cdn(self, method, path)
        if "queue" in roles:
            return queue_api.route(self, method, path)
        return "unknown", not_found

    # -- helpers for the route modules ----------------------------------------------------------

    def error_json(
        self, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> web.Response:
        all_headers = dict(headers or {})
        if isinstance(body, dict) and isinstance(body.get("error_type"), str):
            all_headers.setdefault("X-Fal-Error-Type", body["error_type"])
        return web.json_response(body, status=status, headers=all_headers)

    def check_key(self, request: web.Request, *, storage_or_submit: bool) -> web.Response | None:
        """401 for a missing or wrong key, 403 for a locked account (submit and storage only;
        a status GET still answers for a locked account)."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme != "Key" or not value:
            return web.json_response({"detail": "Missing or unsupported authorization"}, status=401)
        key_id, sep, secret = value.partition(":")
        if not (key_id and sep and secret):
            return web.json_response(
                {
                    "detail": "Invalid Key Authorization header format. "
                    "Expected '<key_id>:<key_secret>'."
                },
                status=401,
            )
        if not secrets.compare_digest(value, self.key):
            return web.json_response({"detail": "No user found for Key ID and Secret"}, status=401)
        if storage_or_submit and self.locked_reason:
            return web.json_response(
                {"detail": f"User is locked. Reason: {self.locked_reason}"}, status=403
            )
        return None

    @property
    def session(self) -> ClientSession:
        if self._session is None:
            self._session = ClientSession()
        return self._session

    def track_stream(self, request: web.Request, open_: bool) -> None:
        """Open SSE streams are closed at stop, so shutdown never waits on them."""
        if request.transport is None:
            return
        if open_:
            self._streams.add(request.transport)
        else:
            self._streams.discard(request.transport)

    # -- control routes (standalone use; not recorded, no key) ----------------------------------

    async def _control(self, request: web.Request) -> web.StreamResponse:
        name = request.path.removeprefix("/_emulator/").strip("/")
        if name == "knobs" and request.method == "POST":
            try:
                self.set_knobs(await request.json())
            except (ValueError, TypeError) as error:
                return web.json_response({"detail": str(error)}, status=400)
            return web.json_response({"ok": True})
        if name == "faults" and request.method == "POST":
            data = await request.json()
            self.script_faults(data["route"], *data["kinds"])
            return web.json_response({"ok": True})
        if name == "requests" and request.method == "GET":
            return web.json_response([record.summary() for record in self.requests])
        if name == "jobs" and request.method == "GET":
            return web.json_response([job_summary(job) for job in self.jobs.values()])
        return web.json_response({"detail": "unknown control route"}, status=404)


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "request_id": job.request_id,
        "status": job.status,
        "prompt": job.body.get("prompt") if isinstance(job.body, dict) else None,
        "submitted_at": job.submitted_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "error_type": job.error_type,
        "result_status": job.result_status,
        "ran": job.ran,
    }


__all__ = ["REQUEST_ERRORS", "FalEmulator", "RecordedRequest", "StoredFile"]
