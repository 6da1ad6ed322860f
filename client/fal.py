"""`FalClient`: the fal queue API for one endpoint, over one `httpx.AsyncClient`.

Typical use::

    handle, queued = await fal.submit(EditInput(...))
    store(handle)                       # resumable from here: fal.handle_for(request_id)
    async for status in fal.watch(handle):
        show(status)
    output = await fal.result(handle)   # typed errors for every way it can fail

Every URL after submit is the one fal returned (docs/fal-queue.md, "URLs and request ids");
base URLs carry their scheme so the client can talk to a local emulator over plain HTTP.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict

from client import media
from client.errors import FalError, FalProtocolError, FalResultNotReady, FalSubmitOutcomeUnknown
from client.retry import RetryPolicy
from client.schema import (
    CancelBody,
    EditInput,
    EditOutput,
    QueueStatus,
    SubmitResponse,
    TrainingInput,
)
from client.transport import DEFAULT_TIMEOUT, FalTransport, json_or_none, parse_body
from client.upload import Uploader
from client.watch import PollPolicy, watch_request

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "fal-ai/flux-2/lora/edit"
TRAINER_ENDPOINT = "fal-ai/flux-2-trainer/edit"
# Asks fal to keep a request's generated files with no expiry (docs/fal-trainer.md, "Keeping
# the trained files").
KEEP_FILES_HEADER = "X-Fal-Object-Lifecycle-Preference"
KEEP_FILES = json.dumps({"expiration_duration_seconds": None})
USER_AGENT = "flux2-lora-edit-bot"
CancelOutcome = Literal["requested", "already_completed", "not_found"]

_NAMESPACES = frozenset({"workflows", "comfy"})
_LEGACY_APP_ID = re.compile(r"(\d+)-([A-Za-z0-9_-]+)")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
OutputT = TypeVar("OutputT", bound=BaseModel)


class RequestHandle(BaseModel):
    """Everything needed to follow, fetch or cancel a queued request. Store it as JSON."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


def app_path(endpoint: str) -> str:
    """The `owner/app` part that status, result and cancel URLs use.

    (docs/fal-queue.md, "URLs and request ids")
    """
    parts = [part for part in endpoint.strip("/").split("/") if part]
    if len(parts) == 1:
        legacy = _LEGACY_APP_ID.fullmatch(parts[0])
        if legacy:
            return f"{legacy.group(1)}/{legacy.group(2)}"
    needed = 3 if parts and parts[0] in _NAMESPACES else 2
    if len(parts) < needed:
        raise ValueError(f"not a fal endpoint id: {endpoint!r}")
    return "/".join(parts[:needed])


class FalClient:
    """The fal queue, storage and media calls the bot needs. One per process.

    `http` carries every request/response call; `stream_http` carries the SSE status streams.
    Either may be passed in (tests, shared settings); what is created here is closed by
    `aclose()`.
    """

    def __init__(
        self,
        queue_url: str,
        rest_url: str,
        cdn_url: str,
        key: str,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        http: httpx.AsyncClient | None = None,
        stream_http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        key_id, sep, secret = key.partition(":")
        if not (key_id and sep and secret):
            raise ValueError("the fal key must look like key_id:key_secret")
        self.queue_url = queue_url.rstrip("/")
        self.rest_url = rest_url.rstrip("/")
        self.cdn_url = cdn_url.rstrip("/")
        self.endpoint = endpoint.strip("/")
        self._app_path = app_path(self.endpoint)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            headers={"User-Agent": USER_AGENT},
        )
        # Status streams get a pool of their own. Each holds a connection for a job's whole
        # life; in the shared pool, httpcore walks every connection on every request and
        # counts open streams against the keep-alive limit, so result fetches paid for a new
        # connection each whenever many jobs were in flight. Measured by
        # bench/fal_queue_bench.py: 200 jobs completing together, p99 notice delay 204 ms with
        # one pool, 70 ms with two.
        self._owns_stream_http = stream_http is None
        self._stream_http = stream_http or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=8),
            headers={"User-Agent": USER_AGENT},
        )
        self._transport = FalTransport(
            self._http,
            self._stream_http,
            key,
            key_origins=[self.queue_url, self.rest_url],
            retry=retry or RetryPolicy(),
            timeout=timeout or DEFAULT_TIMEOUT,
        )
        self._poll = poll or PollPolicy()
        self._uploader = Uploader(self._transport, self.rest_url, self.cdn_url)

    def for_endpoint(self, endpoint: str) -> FalClient:
        """A client for another endpoint of the same account (the edit trainer): the same
        connection pools, retries, polling and request counters. Closing it closes nothing;
        this client still owns the pools."""
        sibling = copy.copy(self)
        sibling.endpoint = endpoint.strip("/")
        sibling._app_path = app_path(sibling.endpoint)
        sibling._owns_http = sibling._owns_stream_http = False
        return sibling

    def __repr__(self) -> str:  # never the key
        return f"FalClient(queue_url={self.queue_url!r}, endpoint={self.endpoint!r})"

    async def __aenter__(self) -> FalClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
        if self._owns_stream_http:
            await self._stream_http.aclose()

    @property
    def request_counts(self) -> dict[str, int]:
        """HTTP requests sent so far, by operation (retries included)."""
        return dict(self._transport.requests)

    @property
    def total_requests(self) -> int:
        return sum(self._transport.requests.values())

    # -- queue ----------------------------------------------------------------------------------

    async def submit(
        self,
        input: EditInput | TrainingInput,
        *,
        start_timeout: float | None = None,
        keep_files: bool = False,
        webhook_url: str | None = None,
    ) -> tuple[RequestHandle, QueueStatus]:
        """Queue a request. Never sends it twice unless fal provably did not see it.

        `start_timeout` (seconds, > 1) asks fal to give up if no runner starts in time; the
        request then completes with `startup_timeout` and is not retried by anyone.
        `keep_files` asks fal to keep the request's generated files with no expiry.
        `webhook_url` asks fal to POST the outcome there when the request ends; verify each
        delivery with `client.webhooks.WebhookVerifier` (docs/fal-webhooks.md, "Asking for a
        webhook").
        """
        headers = {"Accept": "application/json"}
        if keep_files:
            headers[KEEP_FILES_HEADER] = KEEP_FILES
        if start_timeout is not None:
            if start_timeout <= 1:
                raise ValueError("start_timeout must be more than 1 second")
            value = f"{float(start_timeout):.1f}"
            # Both names: older fal hosts read the legacy one, newer clients send the new one.
            headers["X-Fal-Request-Timeout"] = value
            headers["X-Fal-Request-Start-Timeout"] = value
        params: dict[str, str] = {}
        if webhook_url is not None:
            if not webhook_url.startswith(("https://", "http://")):
                raise ValueError("webhook_url must be an http(s) URL")
            params["fal_webhook"] = webhook_url
        response = await self._transport.send(
            "submit",
            "POST",
            f"{self.queue_url}/{self.endpoint}",
            mode="submit",
            headers=headers,
            params=params,
            json=input.model_dump(exclude_none=True, mode="json"),
        )
        if not response.is_success:
            adopted = self._adopt(response)
            if adopted is not None:
                return adopted
            raise self._transport.error_for("submit", response)
        try:
            body = parse_body(SubmitResponse, response, "the submit")
        except FalProtocolError as error:
            # fal accepted something, but we cannot tell what: the same as not knowing.
            self._transport.ambiguous_submit("unreadable_answer")
            raise FalSubmitOutcomeUnknown(
                "fal accepted the request but its answer could not be read"
            ) from error
        handle = RequestHandle(
            request_id=body.request_id,
            status_url=body.status_url,
            response_url=body.response_url,
            cancel_url=body.cancel_url,
        )
        log.info("fal request %s queued at position %s", handle.request_id, body.queue_position)
        status = QueueStatus(
            status=body.status,
            request_id=body.request_id,
            queue_position=body.queue_position,
            status_url=body.status_url,
            response_url=body.response_url,
            cancel_url=body.cancel_url,
        )
        return handle, status

    def _adopt(self, response: httpx.Response) -> tuple[RequestHandle, QueueStatus] | None:
        """A server error that names a request id: fal has the request (and may run and bill
        it), so follow that id rather than report a failure (docs/fal-queue.md, "Submit")."""
        request_id = response.headers.get("x-fal-request-id", "")
        if response.status_code < 500 or not _REQUEST_ID.fullmatch(request_id):
            return None
        self._transport.ambiguous_submit(f"server_error_{response.status_code}_adopted")
        handle = self.handle_for(request_id)
        log.warning(
            "fal submit answered HTTP %d for request %s; following it",
            response.status_code,
            request_id,
        )
        return handle, QueueStatus(
            status="IN_QUEUE",
            request_id=request_id,
            status_url=handle.status_url,
            response_url=handle.response_url,
            cancel_url=handle.cancel_url,
        )

    @property
    def on_ambiguous_submit(self) -> Callable[[str], None] | None:
        return self._transport.on_ambiguous_submit

    @on_ambiguous_submit.setter
    def on_ambiguous_submit(self, hook: Callable[[str], None] | None) -> None:
        self._transport.on_ambiguous_submit = hook

    def handle_for(self, request_id: str) -> RequestHandle:
        """Rebuild a handle from a stored request id (after a restart)."""
        if not _REQUEST_ID.fullmatch(request_id):
            raise ValueError("not a fal request id")
        base = f"{self.queue_url}/{self._app_path}/requests/{request_id}"
        return RequestHandle(
            request_id=request_id,
            status_url=f"{base}/status",
            response_url=base,
            cancel_url=f"{base}/cancel",
        )

    async def status(self, handle: RequestHandle, *, logs: bool = False) -> QueueStatus:
        response = await self._transport.send(
            "status",
            "GET",
            handle.status_url,
            params={"logs": "1" if logs else "0"},
            headers={"Accept": "application/json"},
        )
        if response.status_code not in (200, 202):
            raise self._transport.error_for("status", response)
        return parse_body(QueueStatus, response, "a status request")

    def watch(self, handle: RequestHandle, *, logs: bool = False) -> AsyncIterator[QueueStatus]:
        """Each status change until the request completes (the last item is terminal).

        Close it early with `contextlib.aclosing` to release the stream at once.
        """

        async def poll(with_logs: bool) -> QueueStatus:
            return await self.status(handle, logs=with_logs)

        return watch_request(
            self._transport,
            handle.request_id,
            handle.status_url,
            poll,
            logs=logs,
            policy=self._poll,
        )

    async def result(self, handle: RequestHandle) -> EditOutput:
        """The output of a completed edit, or the typed error it ended with."""
        return await self.result_as(handle, EditOutput)

    async def result_as(self, handle: RequestHandle, model: type[OutputT]) -> OutputT:
        """The output of a completed request read as `model` (this endpoint's output)."""
        response = await self._transport.send(
            "result",
            "GET",
            handle.response_url,
            mode="result",
            headers={"Accept": "application/json"},
        )
        if response.status_code == 200:
            return parse_body(model, response, "the result request")
        if response.status_code in (202, 400) and _still_running(response):
            raise FalResultNotReady(
                "the request has not finished yet", status_code=response.status_code
            )
        raise self._transport.error_for("result", response)

    async def cancel(self, handle: RequestHandle) -> CancelOutcome:
        """Ask fal to cancel. A queued request never runs; a running one gets a signal and may
        still finish. 'already_completed' also covers a retry whose first try got through."""
        response = await self._transport.send(
            "cancel", "PUT", handle.cancel_url, headers={"Accept": "application/json"}
        )
        if response.is_success:
            return "requested"
        body = json_or_none(response)
        state = CancelBody.model_validate(body).status if isinstance(body, dict) else None
        if response.status_code == 400 and state == "ALREADY_COMPLETED":
            return "already_completed"
        if response.status_code == 404:
            return "not_found"
        raise self._transport.error_for("cancel", response)

    # -- files ----------------------------------------------------------------------------------

    async def upload(self, data: bytes, content_type: str, file_name: str) -> str:
        """Store a file on fal's CDN; returns a public URL that fal's runners can fetch."""
        if not data:
            raise FalError("refusing to upload an empty file")
        return await self._uploader.upload(data, content_type, file_name)

    async def check_key(self) -> None:
        """Raise FalAuthError / FalAccountLocked when the key can't be used (costs nothing)."""
        await self._uploader.check_key()

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """The bytes of a result image (CDN URL or data URI), at most `max_bytes`."""
        return await media.download(self._transport, url, max_bytes=max_bytes)


def _still_running(response: httpx.Response) -> bool:
    if response.status_code == 202:
        return True
    body = json_or_none(response)
    if not isinstance(body, dict) or body.get("error_type"):
        return False
    detail = body.get("detail")
    return isinstance(detail, str) and "in progress" in detail.lower()
