"""A server's draft set of pairs, built one pair at a time (`/admin pairs …`) and trained
from without a zip. Images are checked like a zip's and re-hosted on fal storage when added,
since Discord's attachment URLs expire long before a set is complete."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from client.errors import FalError
from jobs.context import JobContext
from jobs.errors import BadRequest, NotFound
from jobs.inputs import InputFile, Inputs
from jobs.pairs import (
    CAPTION_MAX,
    MAX_PAIRS,
    MAX_STARTS,
    SMALL_SIDE,
    RawPair,
    count_message,
    side_problem,
    small_warning,
)
from jobs.policy import Requester
from jobs.request import InputRef, clean_prompt
from jobs.sample_image import pairs_sheet
from jobs.server_policy import ServerPolicy
from storage.models import TrainingPair

log = logging.getLogger(__name__)

PAGE_SIZE = 5
DOWNLOADS_AT_ONCE = 8


@dataclass(frozen=True, slots=True)
class PairsPage:
    pairs: list[tuple[int, TrainingPair]]  # (1-based position, pair)
    page: int
    pages: int
    total: int
    sheet: bytes | None  # thumbnails as one PNG; None for an empty set


def check_instruction(text: str | None, what: str = "The instruction") -> str | None:
    cleaned = clean_prompt(text or "")
    if len(cleaned) > CAPTION_MAX:
        raise BadRequest(f"{what} is {len(cleaned):,} characters; the limit is {CAPTION_MAX:,}.")
    return cleaned or None


class DraftPairs:
    def __init__(self, ctx: JobContext, inputs: Inputs, policy: ServerPolicy) -> None:
        self._ctx = ctx
        self._inputs = inputs
        self._policy = policy

    async def add(
        self,
        who: Requester,
        before: InputFile,
        after: InputFile,
        extras: Sequence[InputFile] = (),
        instruction: str | None = None,
    ) -> tuple[int, list[str]]:
        """Check and re-host one pair, append it: its position and any warnings."""
        await self._policy.require_manager(who)
        text = check_instruction(instruction)
        if len(extras) > MAX_STARTS - 1:
            raise BadRequest(f"A pair takes at most {MAX_STARTS - 1} extra inputs.")
        if await self._ctx.storage.pairs.count(who.guild_id) >= MAX_PAIRS:
            raise BadRequest(self._full())
        infos = await self._inputs.inspect([before, *extras, after])
        problems = [
            problem
            for info, file in zip(infos, [before, *extras, after], strict=True)
            if (problem := side_problem(info, f"{file.label} ({file.filename})")) is not None
        ]
        if problems:
            raise BadRequest(" ".join(problems))
        small = [
            file.label
            for info, file in zip(infos, [before, *extras, after], strict=True)
            if min(info.width, info.height) < SMALL_SIDE
        ]
        refs = await self._inputs.rehost(infos)
        added = await self._ctx.storage.pairs.add(
            who.guild_id,
            [ref.model_dump() for ref in refs[:-1]],
            refs[-1].model_dump(),
            instruction=text,
            added_by=who.user_id,
            max_pairs=MAX_PAIRS,
        )
        if added is None:
            raise BadRequest(self._full())
        log.info("guild %s: pair %s added by %s", who.guild_id, added[1], who.user_id)
        return added[1], [w for w in [small_warning(small)] if w]

    @staticmethod
    def _full() -> str:
        return (
            f"The draft set already holds {MAX_PAIRS} pairs, the most one training takes. "
            "Train from it, or remove pairs with `/admin pairs remove`."
        )

    async def page(self, who: Requester, page: int) -> PairsPage:
        await self._policy.require_manager(who)
        pairs = self._ctx.storage.pairs
        total = await pairs.count(who.guild_id)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        page = min(max(0, page), pages - 1)
        shown = await pairs.list(who.guild_id, offset=page * PAGE_SIZE, limit=PAGE_SIZE)
        numbered = [(page * PAGE_SIZE + i + 1, pair) for i, pair in enumerate(shown)]
        sheet = await self._sheet(numbered) if numbered else None
        return PairsPage(numbered, page, pages, total, sheet)

    async def _sheet(self, numbered: list[tuple[int, TrainingPair]]) -> bytes | None:
        rows: list[tuple[int, list[bytes | None]]] = []
        for position, pair in numbered:
            refs = [*pair.inputs, pair.expected]
            rows.append((position, [await self._fetch(InputRef.model_validate(r)) for r in refs]))
        return await asyncio.to_thread(pairs_sheet, rows)

    async def _fetch(self, ref: InputRef) -> bytes | None:
        try:
            return await self._ctx.fal.download(ref.url, max_bytes=self._ctx.config.max_input_bytes)
        except FalError:
            return None  # drawn as a blank tile; training from it names the missing image

    async def remove(self, who: Requester, position: int) -> int:
        """Remove pair N; returns how many are left."""
        await self._policy.require_manager(who)
        removed = await self._ctx.storage.pairs.remove(who.guild_id, position)
        if removed is None:
            total = await self._ctx.storage.pairs.count(who.guild_id)
            raise NotFound(
                f"There is no pair {position}; the draft set has {total} (see `/admin pairs list`)."
            )
        return await self._ctx.storage.pairs.count(who.guild_id)

    async def clear(self, who: Requester) -> int:
        await self._policy.require_manager(who)
        return await self._ctx.storage.pairs.clear(who.guild_id)

    async def raw_pairs(self, who: Requester) -> list[RawPair]:
        """The draft set's images, fetched back from fal storage for a training."""
        stored = await self._ctx.storage.pairs.list(who.guild_id)
        if not stored:
            raise BadRequest(
                "Attach a zip of pairs (`pairs:`), or build a draft set first with "
                "`/admin pairs add`."
            )
        counted = count_message(len(stored))
        if counted is not None:
            raise BadRequest(f"{counted} Add more with `/admin pairs add`.")
        gate = asyncio.Semaphore(DOWNLOADS_AT_ONCE)

        async def fetch(position: int, side: str, ref: dict[str, object]) -> tuple[str, bytes]:
            label = f"pair {position} {side}"
            async with gate:
                data = await self._fetch(InputRef.model_validate(ref))
            if data is None:
                raise BadRequest(
                    f"The {side} image of pair {position} is gone from fal's storage. Remove "
                    f"it with `/admin pairs remove {position}` and add it again."
                )
            return label, data

        async def load(position: int, pair: TrainingPair) -> RawPair:
            sides = ["before"] + [f"extra input {n}" for n in range(2, len(pair.inputs) + 1)]
            pairs = zip(sides, pair.inputs, strict=True)
            starts = [fetch(position, side, ref) for side, ref in pairs]
            files = await asyncio.gather(*starts, fetch(position, "after", pair.expected))
            return RawPair(
                label=f"pair {position}",
                starts=list(files[:-1]),
                end=files[-1],
                caption=pair.instruction,
            )

        return list(await asyncio.gather(*(load(n, p) for n, p in enumerate(stored, 1))))
