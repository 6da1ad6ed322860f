"""Fetching result media: CDN URLs over HTTP (no key: fal media is public) or data URIs."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import urllib.parse

import httpx

from client.errors import FalDownloadTooLarge, FalError, FalNotFound, FalUnavailable
from client.transport import FalTransport

log = logging.getLogger(__name__)

_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


def decode_data_uri(uri: str, *, max_bytes: int) -> bytes:
    """Bytes of `data:[<mime>][;base64],<payload>` (what `sync_mode` returns)."""
    header, comma, payload = uri.partition(",")
    if not header.startswith("data:") or not comma:
        raise FalError("fal returned a malformed data URI")
    if header.endswith(";base64"):
        if len(payload) * 3 // 4 > max_bytes + 3:
            raise FalDownloadTooLarge(f"the result is larger than {max_bytes} bytes")
        try:
            data = base64.b64decode(payload, validate=True)
        except binascii.Error as error:
            raise FalError("fal returned a data URI that is not valid base64") from error
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise FalDownloadTooLarge(f"the result is larger than {max_bytes} bytes")
    return data


async def download(transport: FalTransport, url: str, *, max_bytes: int) -> bytes:
    if url.startswith("data:"):
        return decode_data_uri(url, max_bytes=max_bytes)
    target = httpx.URL(url)
    if target.scheme not in ("http", "https"):
        raise FalError("fal returned a result URL that is neither http(s) nor a data URI")
    policy = transport.retry
    attempt = 0
    while True:
        attempt += 1
        transport.requests["download"] += 1
        try:
            async with transport.http.stream("GET", target, timeout=transport.timeout) as response:
                if response.status_code == 404:
                    raise FalNotFound("the result file is gone (expired or never stored)")
                if response.status_code in _RETRYABLE and attempt < policy.max_attempts:
                    pass  # retried below, after the response is closed
                elif response.status_code != 200:
                    raise FalUnavailable(
                        f"the result file could not be downloaded (HTTP {response.status_code})",
                        status_code=response.status_code,
                    )
                else:
                    declared = response.headers.get("content-length")
                    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                        raise FalDownloadTooLarge(f"the result is larger than {max_bytes} bytes")
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise FalDownloadTooLarge(
                                f"the result is larger than {max_bytes} bytes"
                            )
                        chunks.append(chunk)
                    return b"".join(chunks)
        except httpx.TransportError as error:
            if attempt >= policy.max_attempts:
                raise FalUnavailable(
                    f"the result file could not be downloaded ({type(error).__name__})"
                ) from error
            log.info("fal download: %s; retry %d", type(error).__name__, attempt)
        await asyncio.sleep(policy.delay(attempt))
