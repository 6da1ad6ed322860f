"""Before/after: a result's first input and the result side by side as one labelled image, and an
animated flip between them, both within the channel's upload limit. Nothing runs at fal and
nothing is charged; the first input comes back from fal storage, where it was re-hosted at
admission."""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from client.errors import FalError
from jobs.compose import flip, side_by_side
from jobs.context import JobContext
from jobs.encode import fit_to_limit
from jobs.errors import BadRequest, NotFound, Refused
from jobs.fal_failures import fal_failure_text
from jobs.policy import Requester, check_channel
from jobs.publisher import ResultImage
from jobs.reruns import Reruns

log = logging.getLogger(__name__)

_OVERHEAD = 64 * 1024  # the message's JSON and part headers (as in jobs/encode.py)


@dataclass(frozen=True, slots=True)
class Comparison:
    job_id: int
    pair: ResultImage
    flip: ResultImage


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


class Compare:
    def __init__(self, ctx: JobContext, reruns: Reruns) -> None:
        self._ctx = ctx
        self._reruns = reruns

    async def check(self, who: Requester, job_id: int) -> None:
        """Refuse before any download: other servers' results don't exist; the channel rules."""
        await self._reruns.result_job(who, job_id)
        settings = await self._ctx.storage.settings.effective(who.guild_id, who.rules_channel_id)
        check_channel(settings)

    async def compare(
        self, who: Requester, job_id: int, result: bytes, *, spoiler: bool = False
    ) -> Comparison:
        """`result` is the result image as posted (read from the result message)."""
        job = await self._reruns.result_job(who, job_id)
        settings = await self._ctx.storage.settings.effective(who.guild_id, who.rules_channel_id)
        check_channel(settings)
        if not job.request.inputs:
            raise NotFound(f"Edit #{job_id} has no input to compare with.")
        first = job.request.inputs[0]
        try:
            before = await self._ctx.fal.download(
                first.url, max_bytes=self._ctx.config.max_input_bytes
            )
        except FalError as error:
            raise Refused(fal_failure_text(error, self._ctx.metrics)) from None
        limit = who.upload_limit
        try:
            pair_png = await asyncio.to_thread(side_by_side, before, result)
        except (UnidentifiedImageError, OSError, ValueError):
            raise BadRequest(f"The image of edit #{job_id} can't be read to compare.") from None
        pair = ResultImage(
            pair_png, f"compare-{job_id}.png", "image/png", *_size(pair_png), spoiler=spoiler
        )
        [pair], _ = fit_to_limit([pair], limit // 2)
        room = max(1, limit - len(pair.data) - 2 * _OVERHEAD)
        gif = await asyncio.to_thread(flip, before, result, room)
        animation = ResultImage(
            gif, f"compare-{job_id}.gif", "image/gif", *_size(gif), spoiler=spoiler
        )
        log.info("job %s compared for user %s in guild %s", job_id, who.user_id, who.guild_id)
        return Comparison(job_id, pair, animation)
