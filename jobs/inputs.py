"""The member's images: downloaded from Discord, checked by decoding, re-hosted at fal storage
(deduplicated by SHA-256) so reruns still work after Discord's attachment URLs expire."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from client.errors import FalError
from jobs.context import JobContext
from jobs.errors import BadRequest, Refused
from jobs.fal_failures import fal_failure_text
from jobs.images import ImageInfo, human_bytes, inspect_image
from jobs.request import InputRef
from storage.models import StoredInput

log = logging.getLogger(__name__)


class InputFile(Protocol):
    """An attachment the member gave; the cog adapts Discord's attachment to this."""

    @property
    def label(self) -> str: ...

    @property
    def filename(self) -> str: ...

    @property
    def size(self) -> int: ...

    async def read(self) -> bytes: ...


class Inputs:
    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx

    async def prepare(self, files: Sequence[InputFile]) -> list[InputRef]:
        """Download, check and re-host the member's images (deduplicated by SHA-256)."""
        return await self.rehost(await self.inspect(files))

    async def inspect(self, files: Sequence[InputFile]) -> list[ImageInfo]:
        """Download from Discord and decode; nothing reaches fal yet."""
        if not files:
            raise BadRequest("Attach at least one image to edit.")
        config = self._ctx.config
        infos: list[ImageInfo] = []
        for file in files:
            if file.size > config.max_input_bytes:
                raise BadRequest(
                    f"{file.label} ({file.filename}) is {human_bytes(file.size)}; "
                    f"the limit is {human_bytes(config.max_input_bytes)}."
                )
            try:
                data = await file.read()
            except Exception:
                log.warning("could not download %s", file.label, exc_info=True)
                raise BadRequest(
                    f"I couldn't download {file.label} from Discord. Attach it again."
                ) from None
            infos.append(
                await asyncio.to_thread(  # decoding is CPU work; keep the event loop free
                    inspect_image,
                    data,
                    f"{file.label} ({file.filename})",
                    max_bytes=config.max_input_bytes,
                    max_pixels=config.max_input_pixels,
                )
            )
        return infos

    async def rehost(self, infos: Sequence[ImageInfo]) -> list[InputRef]:
        """Put checked images on fal's storage (once per SHA-256)."""
        try:
            return [await self._rehost(info) for info in infos]
        except FalError as error:  # fal down or the key refused: not the member's doing
            self._ctx.notices.fal_failed(error)
            raise Refused(fal_failure_text(error, self._ctx.metrics)) from None

    async def _rehost(self, info: ImageInfo) -> InputRef:
        storage = self._ctx.storage
        stored = await storage.inputs.get(info.sha256)
        if stored is None:
            url = await self._ctx.fal.upload(
                info.data, info.content_type, f"{info.sha256[:16]}.{info.extension}"
            )
            stored = StoredInput(
                sha256=info.sha256,
                url=url,
                content_type=info.content_type,
                byte_size=len(info.data),
                width=info.width,
                height=info.height,
                created_at=self._ctx.now(),
            )
            await storage.inputs.put(stored)
        return InputRef(
            sha256=stored.sha256,
            url=stored.url,
            content_type=stored.content_type,
            width=stored.width,
            height=stored.height,
        )


def draft_refs(infos: Sequence[ImageInfo]) -> list[InputRef]:
    """Inputs as a request needs them to be checked and priced, before any upload."""
    return [
        InputRef(
            sha256=info.sha256,
            url="",
            content_type=info.content_type,
            width=info.width,
            height=info.height,
        )
        for info in infos
    ]
