"""A server's LoRA registry: what managers may change, what each member may see and use.

One visibility rule: members see enabled LoRAs, and NSFW ones only in age-restricted channels;
managers also see disabled ones. Storage refusals come out as messages a manager can act on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from jobs.errors import BadRequest, NotFound
from jobs.loras import check_description, check_name, check_path, check_scale, parse_triggers
from jobs.policy import Requester
from jobs.request import RecipeLora
from storage.errors import DuplicateName, LoraLimitReached, LoraNotFound
from storage.loras import LoraRepository
from storage.models import Lora, LoraChange, LoraTraining
from storage.trainings import TrainingRepository

log = logging.getLogger(__name__)

PAGE_SIZE = 8
SEARCH_LIMIT = 25


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who looks at the registry, from where: what the visibility rule needs."""

    manager: bool
    channel_nsfw: bool

    def sees(self, lora: Lora) -> bool:
        return (lora.enabled or self.manager) and (not lora.nsfw or self.channel_nsfw)


@dataclass(frozen=True, slots=True)
class Page:
    loras: list[Lora]
    page: int
    pages: int
    total: int


@dataclass(frozen=True, slots=True)
class Card:
    lora: Lora
    history: list[LoraChange] | None  # managers only
    training: LoraTraining | None = None  # managers only: the recipe of a trained LoRA


@dataclass(frozen=True, slots=True)
class Edited:
    lora: Lora
    changed: bool


@asynccontextmanager
async def _member_facing() -> AsyncIterator[None]:
    """Storage refusals a manager can act on, in words."""
    try:
        yield
    except DuplicateName as error:
        raise BadRequest(
            f"A LoRA named `{error.existing}` already exists here (names ignore case)."
        ) from None
    except LoraNotFound as error:
        raise NotFound(f"This server has no LoRA named `{error.name[:40]}`.") from None
    except LoraLimitReached as error:
        raise BadRequest(
            f"This server already has {error.limit} LoRAs, the most allowed; remove one first."
        ) from None


class Registry:
    def __init__(
        self,
        loras: LoraRepository,
        max_per_server: int,
        trainings: TrainingRepository | None = None,
    ) -> None:
        self._loras = loras
        self._max = max_per_server
        self._trainings = trainings

    # ------------------------------------------------------------------ managers' changes

    async def add(
        self,
        who: Requester,
        name: str,
        path: str,
        *,
        scale: float = 1.0,
        triggers: str | None = None,
        description: str | None = None,
        nsfw: bool = False,
    ) -> Lora:
        async with _member_facing():
            return await self._loras.add(
                who.guild_id,
                check_name(name),
                check_path(path),
                default_scale=check_scale(scale),
                trigger_words=parse_triggers(triggers),
                description=check_description(description),
                nsfw=nsfw,
                actor_id=who.user_id,
                max_per_guild=self._max,
            )

    async def edit(
        self,
        who: Requester,
        name: str,
        *,
        new_name: str | None = None,
        path: str | None = None,
        scale: float | None = None,
        triggers: str | None = None,
        description: str | None = None,
        nsfw: bool | None = None,
    ) -> Edited:
        """Only the given fields change; '-' clears triggers or the description."""
        changes: dict[str, Any] = {}
        if new_name is not None:
            changes["name"] = check_name(new_name)
        if path is not None:
            changes["path"] = check_path(path)
        if scale is not None:
            changes["default_scale"] = check_scale(scale)
        if triggers is not None:
            changes["trigger_words"] = [] if triggers.strip() == "-" else parse_triggers(triggers)
        if description is not None:
            changes["description"] = (
                "" if description.strip() == "-" else check_description(description)
            )
        if nsfw is not None:
            changes["nsfw"] = nsfw
        if not changes:
            raise BadRequest("Nothing to change: give at least one option besides the name.")
        async with _member_facing():
            before = await self._loras.get(who.guild_id, name.strip())
            lora = await self._loras.update(who.guild_id, check_name(name), who.user_id, **changes)
        return Edited(lora, changed=before is None or before.version != lora.version)

    async def set_enabled(self, who: Requester, name: str, enabled: bool) -> Lora:
        async with _member_facing():
            return await self._loras.set_enabled(
                who.guild_id, check_name(name), enabled, actor_id=who.user_id
            )

    async def to_remove(self, who: Requester, name: str) -> Lora:
        """The LoRA a manager asks to remove (the removal itself waits for a confirmation)."""
        name = check_name(name)
        lora = await self._loras.get(who.guild_id, name)
        if lora is None:
            raise NotFound(f"This server has no LoRA named `{name}`.")
        return lora

    async def remove(self, who: Requester, lora: Lora) -> None:
        if lora.guild_id != who.guild_id:
            raise NotFound(f"This server has no LoRA named `{lora.name}`.")
        async with _member_facing():
            await self._loras.remove(lora.guild_id, lora.name, actor_id=who.user_id)

    # ------------------------------------------------------------------ what members see

    async def card(self, who: Requester, viewer: Viewer, name: str) -> Card:
        name = check_name(name)  # refuses invisible and direction characters before echoing
        lora = await self._loras.get(who.guild_id, name)
        if lora is None or not viewer.sees(lora):
            raise NotFound(f"This server has no LoRA named `{name}`.")
        if not viewer.manager:
            return Card(lora, None)
        history = await self._loras.history(who.guild_id, lora.name)
        trained = await self._trainings.latest(lora.id) if self._trainings else None
        return Card(lora, history, trained)

    async def page(self, guild_id: int, page: int, *, channel_nsfw: bool) -> Page:
        """The member list (disabled LoRAs are left out even for managers)."""
        total = await self._loras.count(guild_id, include_disabled=False, include_nsfw=channel_nsfw)
        pages = max(1, -(-total // PAGE_SIZE))
        page = min(max(0, page), pages - 1)
        loras = await self._loras.list(
            guild_id,
            include_disabled=False,
            include_nsfw=channel_nsfw,
            offset=page * PAGE_SIZE,
            limit=PAGE_SIZE,
        )
        return Page(loras, page, pages, total)

    async def search(self, guild_id: int, viewer: Viewer, typed: str, max_chars: int) -> list[Lora]:
        """Autocomplete: prefix matches of the name, then name, then description substrings."""
        return await self._loras.search(
            guild_id,
            typed.strip()[:max_chars],  # Discord caps what can be typed; so do we
            include_disabled=viewer.manager,
            include_nsfw=viewer.channel_nsfw,
            limit=SEARCH_LIMIT,
        )

    # ------------------------------------------------------------------ use in an edit

    async def resolve(
        self, who: Requester, picks: Sequence[tuple[str, float | None]]
    ) -> list[RecipeLora]:
        seen: set[str] = set()
        resolved: list[RecipeLora] = []
        for name, scale in picks:
            if not name.strip():
                continue
            name = check_name(name)  # a typed name may hide invisible or direction characters
            key = name.lower()
            if key in seen:
                raise BadRequest(f"You picked the LoRA `{name}` twice; pick it once.")
            seen.add(key)
            lora = await self._loras.get(who.guild_id, name)
            if lora is None:
                raise BadRequest(
                    f"This server has no LoRA named `{name}`. See `/loras` for the list."
                )
            if not lora.enabled:
                raise BadRequest(f"The LoRA `{lora.name}` is disabled on this server.")
            if lora.nsfw and not who.channel_nsfw:
                raise BadRequest(
                    f"The LoRA `{lora.name}` is marked NSFW; use it in an age-restricted channel."
                )
            resolved.append(
                RecipeLora(
                    id=lora.id,
                    name=lora.name,
                    path=lora.path,
                    scale=lora.default_scale if scale is None else scale,
                    version=lora.version,
                    trigger_words=list(lora.trigger_words),
                )
            )
        return resolved

    async def current(self, who: Requester, snapshot: RecipeLora) -> Lora:
        """The LoRA a recipe used, by id: a LoRA renamed since is still the same LoRA; a new
        one under the old name is not."""
        lora = await self._loras.get_by_id(snapshot.id)
        if lora is None or lora.guild_id != who.guild_id:
            raise BadRequest(
                f"The LoRA `{snapshot.name}` was removed from this server, so this edit "
                "can't be rerun."
            )
        return lora
