"""REST storage routes and the CDN (docs/fal-queue.md, "Storage uploads"): the v3 token flow,
initiate + signed PUT, and serving uploaded and generated files."""

from __future__ import annotations

import functools
import json
import mimetypes
import re
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from emulators.fal_emulator.common import (
    CdnToken,
    Handler,
    PendingUpload,
    RecordedRequest,
    StoredFile,
    method_not_allowed,
    not_found,
)

if TYPE_CHECKING:
    from emulators.fal_emulator.server import FalEmulator

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def route_rest(emu: FalEmulator, method: str, path: str) -> tuple[str, Handler]:
    clean = path.rstrip("/")
    table: dict[str, tuple[str, Handler]] = {
        "/storage/auth/token": ("token", functools.partial(token, emu)),
        "/storage/upload/initiate": ("initiate", functools.partial(initiate, emu)),
    }
    if clean not in table:
        return "unknown", not_found
    name, handler = table[clean]
    return (name, handler) if method == "POST" else (name, method_not_allowed)


def route_cdn(emu: FalEmulator, method: str, path: str) -> tuple[str, Handler]:
    if path.rstrip("/") == "/files/upload":
        if method != "POST":
            return "cdn_upload", method_not_allowed
        return "cdn_upload", functools.partial(cdn_upload, emu)
    if path.startswith("/upload/"):
        if method != "PUT":
            return "signed_put", method_not_allowed
        return "signed_put", functools.partial(signed_put, emu)
    if path.startswith("/files/") and method in ("GET", "HEAD"):
        return "file", functools.partial(serve_file, emu)
    return "unknown", not_found


def _file_name(requested: str | None, content_type: str) -> str:
    if requested:
        name = _SAFE_NAME.sub("_", requested.rsplit("/", 1)[-1]).strip("._")
        if name:
            return name
    extension = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ".bin"
    return uuid.uuid4().hex + extension


def _new_path(name: str) -> str:
    return f"/files/{secrets.token_hex(8)}/{name}"


async def token(emu: FalEmulator, request: web.Request, record: RecordedRequest) -> web.Response:
    denied = emu.check_key(request, storage_or_submit=True)
    if denied is not None:
        return denied
    if request.query.get("storage_type") != "fal-cdn-v3":
        return emu.error_json(
            400, {"detail": "Unsupported storage_type", "error_type": "bad_request"}
        )
    value = secrets.token_urlsafe(24)
    emu.tokens[value] = CdnToken(expires_at=time.time() + emu.token_ttl)
    expires = datetime.now(UTC) + timedelta(seconds=emu.token_ttl)
    return web.json_response(
        {
            "token": value,
            "token_type": "Bearer",
            "base_url": emu.cdn_url,
            "expires_at": expires.isoformat(),
        }
    )


async def cdn_upload(
    emu: FalEmulator, request: web.Request, record: RecordedRequest
) -> web.Response:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    issued = emu.tokens.get(value) if scheme == "Bearer" else None
    if issued is None or issued.expires_at < time.time():
        return web.json_response({"detail": "Invalid or expired token"}, status=401)
    content_type = request.headers.get("Content-Type")
    if not content_type:
        return web.json_response({"detail": "Content-Type is required"}, status=400)
    if not record.body:
        return web.json_response({"detail": "Empty upload"}, status=400)
    path = _new_path(_file_name(request.headers.get("X-Fal-File-Name"), content_type))
    emu.files[path] = StoredFile(record.body, content_type)
    return web.json_response({"access_url": emu.cdn_url + path})


async def initiate(emu: FalEmulator, request: web.Request, record: RecordedRequest) -> web.Response:
    denied = emu.check_key(request, storage_or_submit=True)
    if denied is not None:
        return denied
    if request.query.get("storage_type", "gcs") not in ("gcs", "fal-cdn-v3"):
        return emu.error_json(
            400, {"detail": "Unsupported storage_type", "error_type": "bad_request"}
        )
    try:
        body = json.loads(record.body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return emu.error_json(
            422,
            {
                "detail": [
                    {
                        "type": "dict_type",
                        "loc": ["body"],
                        "msg": "Input should be a valid dictionary",
                    }
                ]
            },
        )
    content_type = str(body.get("content_type") or "application/octet-stream")
    path = _new_path(_file_name(body.get("file_name"), content_type))
    signature = secrets.token_urlsafe(24)
    emu.pending_uploads[signature] = PendingUpload(path=path, content_type=content_type)
    return web.json_response(
        {
            "upload_url": f"{emu.cdn_url}/upload/{secrets.token_hex(4)}?signature={signature}",
            "file_url": emu.cdn_url + path,
        }
    )


async def signed_put(
    emu: FalEmulator, request: web.Request, record: RecordedRequest
) -> web.Response:
    pending = emu.pending_uploads.get(request.query.get("signature", ""))
    if pending is None or pending.used:
        return web.Response(status=403, text="SignatureDoesNotMatch")
    # fal-client 1.0.3 sends the key here too; a signed URL ignores it either way.
    pending.used = True
    content_type = request.headers.get("Content-Type") or pending.content_type
    emu.files[pending.path] = StoredFile(record.body, content_type)
    return web.Response(status=200)


async def serve_file(
    emu: FalEmulator, request: web.Request, record: RecordedRequest
) -> web.Response:
    stored = emu.files.get(request.path)
    if stored is None:
        return web.json_response({"detail": "File not found"}, status=404)
    return web.Response(body=stored.data, content_type=stored.content_type.split(";")[0])
