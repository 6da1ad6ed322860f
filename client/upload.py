"""Uploading input files to fal storage: the CDN v3 token flow, then initiate + PUT.

The flow is described in docs/fal-queue.md, "Storage uploads".

The CDN token is cached until shortly before it expires, so a steady stream of uploads costs
one request each. If the v3 path fails for any reason but a rejected key, the upload falls back
to `storage/upload/initiate` and a PUT to the signed URL, as the official clients do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from client.errors import FalAccountLocked, FalAuthError, FalError, FalProtocolError
from client.schema import CdnToken, CdnUploadResponse, InitiateUploadResponse
from client.transport import FalTransport, parse_body

log = logging.getLogger(__name__)

# Refresh a token this long before fal says it expires, so it cannot lapse mid-upload.
TOKEN_MARGIN_SECONDS = 60.0


class _CachedToken:
    def __init__(self, header: str, valid_until: float) -> None:
        self.header = header
        self.valid_until = valid_until


def _expiry_epoch(expires_at: str) -> float:
    moment = datetime.fromisoformat(expires_at)
    if moment.tzinfo is None:  # fal sends an offset; a naive time is read as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class Uploader:
    def __init__(self, transport: FalTransport, rest_url: str, cdn_url: str) -> None:
        self._transport = transport
        self._rest_url = rest_url
        self._cdn_url = cdn_url
        self._token: _CachedToken | None = None
        self._token_lock = asyncio.Lock()

    async def upload(self, data: bytes, content_type: str, file_name: str) -> str:
        try:
            return await self._upload_v3(data, content_type, file_name)
        except (FalAuthError, FalAccountLocked):
            raise  # the fallback uses the same key and would be refused the same way
        except FalError as error:
            log.info("fal upload via CDN v3 failed (%s); falling back to initiate + PUT", error)
        return await self._upload_initiate(data, content_type, file_name)

    async def _cdn_token(self, *, fresh: bool = False) -> str:
        async with self._token_lock:
            if not fresh and self._token is not None and time.time() < self._token.valid_until:
                return self._token.header
            response = await self._transport.send(
                "upload_token",
                "POST",
                f"{self._rest_url}/storage/auth/token",
                params={"storage_type": "fal-cdn-v3"},
                headers={"Accept": "application/json"},
                json={},
            )
            if response.status_code != 200:
                raise self._transport.error_for("upload_token", response)
            token = parse_body(CdnToken, response, "the storage token request")
            try:
                valid_until = _expiry_epoch(token.expires_at) - TOKEN_MARGIN_SECONDS
            except ValueError as error:
                raise FalProtocolError("fal sent a storage token without a valid expiry") from error
            self._token = _CachedToken(f"{token.token_type} {token.token}", valid_until)
            return self._token.header

    async def check_key(self) -> None:
        """One authenticated call that creates nothing billable: a fresh storage token."""
        await self._cdn_token(fresh=True)

    async def _upload_v3(self, data: bytes, content_type: str, file_name: str) -> str:
        token = await self._cdn_token()
        response = await self._transport.send(
            "upload",
            "POST",
            f"{self._cdn_url}/files/upload",
            auth=False,  # the CDN takes the short-lived token, never the key
            headers={
                "Authorization": token,
                "Content-Type": content_type,
                "X-Fal-File-Name": file_name,
            },
            content=data,
        )
        if response.status_code in (401, 403):
            self._token = None  # revoked or expired early: the next upload fetches a new one
            raise FalError(f"the fal CDN refused the upload token (HTTP {response.status_code})")
        if response.status_code != 200:
            raise self._transport.error_for("upload", response)
        return parse_body(CdnUploadResponse, response, "the upload").access_url

    async def _upload_initiate(self, data: bytes, content_type: str, file_name: str) -> str:
        response = await self._transport.send(
            "upload_initiate",
            "POST",
            f"{self._rest_url}/storage/upload/initiate",
            params={"storage_type": "fal-cdn-v3"},
            headers={"Accept": "application/json"},
            json={"file_name": file_name, "content_type": content_type},
        )
        if response.status_code != 200:
            raise self._transport.error_for("upload_initiate", response)
        target = parse_body(InitiateUploadResponse, response, "the upload request")
        put = await self._transport.send(
            "upload_put",
            "PUT",
            target.upload_url,
            auth=False,  # a signed URL: its query string is the credential
            headers={"Content-Type": content_type},
            content=data,
        )
        if not put.is_success:
            raise self._transport.error_for("upload_put", put)
        return target.file_url
