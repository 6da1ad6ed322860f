"""Types and small answers shared by the emulator's route modules."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request, "RecordedRequest"], Awaitable[web.StreamResponse]]

# Request errors (docs/fal-queue.md, "Errors"): error_type → (HTTP status of the result, detail).
REQUEST_ERRORS: dict[str, tuple[int, str]] = {
    "request_timeout": (504, "Request timed out"),
    "startup_timeout": (504, "Runner did not start within the allowed time"),
    "runner_scheduling_failure": (503, "No runner could be allocated"),
    "runner_connection_timeout": (503, "Connection to the runner timed out"),
    "runner_disconnected": (503, "Runner disconnected"),
    "runner_connection_refused": (503, "Runner refused the connection"),
    "runner_connection_error": (503, "Runner connection error"),
    "runner_incomplete_response": (502, "Runner sent an incomplete response"),
    "runner_server_error": (500, "Runner server error"),
    "client_disconnected": (499, "Client disconnected"),
    "client_cancelled": (499, "Request cancelled by the client"),
    "bad_request": (400, "Bad request"),
    "internal_error": (500, "Internal error"),
}


@dataclass
class RecordedRequest:
    """One request as the emulator received it. The Authorization value is never kept."""

    seq: int
    at: float
    host: str  # "queue", "rest" or "cdn"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    auth_scheme: str | None
    body: bytes
    route: str
    request_id: str | None = None
    fault: str | None = None
    status: int | None = None

    @property
    def reached_fal(self) -> bool:
        """False when an ingress fault answered: fal's own server never saw it."""
        return self.fault is None or not self.fault.startswith("ingress")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data["body"] = self.body[:2000].decode("utf-8", "replace")
        return data


@dataclass
class StoredFile:
    data: bytes
    content_type: str


@dataclass
class PendingUpload:
    path: str
    content_type: str
    used: bool = False


@dataclass
class CdnToken:
    expires_at: float


def ingress_response(code: int) -> web.Response:
    reason = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
    title = f"{code} {reason.get(code, 'Error')}"
    html = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return web.Response(status=code, text=html, content_type="text/html")


async def not_found(request: web.Request, record: RecordedRequest) -> web.StreamResponse:
    return web.json_response({"detail": f"Path {request.path} not found"}, status=404)


async def method_not_allowed(request: web.Request, record: RecordedRequest) -> web.StreamResponse:
    return web.json_response({"detail": "Method Not Allowed"}, status=405)
