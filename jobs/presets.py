"""Server presets: a named bundle of up to three LoRAs with scales, a prompt template and any of
guidance, steps, size, acceleration and format. `/edit preset:` fills in what the member did not
set; what the member sets wins.

A preset keeps its LoRAs by id, so a renamed LoRA is still the preset's; a removed or disabled
one makes the preset refuse with that reason until a manager edits it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from jobs.errors import BadRequest, NotFound, Refused
from jobs.loras import NAME_RE, _has_invisible, check_description, check_name, check_scale
from jobs.policy import Requester
from jobs.request import (
    GUIDANCE_RANGE,
    MAX_LORAS,
    PROMPT_MAX,
    SIZE_CHOICES,
    STEPS_RANGE,
    Acceleration,
    EditOptions,
    LoraPick,
    OutputFormat,
    check_prompt,
)
from storage.loras import LoraRepository
from storage.presets import (
    DuplicatePreset,
    Preset,
    PresetLimitReached,
    PresetNotFound,
    PresetRepository,
)

log = logging.getLogger(__name__)

PLACEHOLDER = "{prompt}"
TEMPLATE_MAX = 1000
MAX_PER_SERVER = 50
CLEARABLE = ("template", "guidance", "steps", "size", "acceleration", "format", "description")

Slot = tuple[str | None, float | None]  # (LoRA name, scale) as typed in one lora/scale pair


class PresetLora(BaseModel):
    id: int
    name: str  # as it was named when the preset was saved; the registry's current name wins
    scale: float


class PresetRecipe(BaseModel):
    loras: list[PresetLora] = Field(default_factory=list)
    template: str | None = None
    guidance: float | None = None
    steps: int | None = None
    size: str | None = None
    acceleration: Acceleration | None = None
    output_format: OutputFormat | None = None
    description: str = ""

    def is_empty(self) -> bool:
        return not (self.loras or self.template) and all(
            value is None
            for value in (
                self.guidance,
                self.steps,
                self.size,
                self.acceleration,
                self.output_format,
            )
        )


@dataclass(frozen=True, slots=True)
class PresetView:
    """A preset as someone sees it now: its LoRAs under their current names, and why it can't
    be used (a removed or disabled LoRA), if so."""

    name: str
    recipe: PresetRecipe
    loras: list[tuple[str, float]]
    problem: str | None
    nsfw: bool


@asynccontextmanager
async def _member_facing() -> AsyncIterator[None]:
    try:
        yield
    except DuplicatePreset as error:
        raise BadRequest(
            f"A preset named `{error.existing}` already exists here (names ignore case)."
        ) from None
    except PresetNotFound as error:
        raise NotFound(f"This server has no preset named `{error.name[:40]}`.") from None
    except PresetLimitReached as error:
        raise BadRequest(
            f"This server already has {error.limit} presets, the most allowed; remove one first."
        ) from None


def check_preset_name(name: str) -> str:
    if _has_invisible(name):
        raise BadRequest(
            "Preset names can't contain invisible or direction-changing characters. "
            "Use letters, digits, - and _."
        )
    name = name.strip()
    if not NAME_RE.fullmatch(name):
        raise BadRequest(
            f"`{name[:40]}` isn't a valid preset name: use 1–32 characters of letters (A–Z), "
            "digits, - and _."
        )
    return name


def check_template(template: str) -> str:
    text = check_prompt(template).strip()
    if text.count(PLACEHOLDER) != 1:
        raise BadRequest(
            f"The template must contain `{PLACEHOLDER}` once: it marks where the member's words "
            f"go, as in `{PLACEHOLDER}, oil painting`."
        )
    if len(text) > TEMPLATE_MAX:
        raise BadRequest(
            f"The template is {len(text):,} characters; the limit is {TEMPLATE_MAX:,}."
        )
    return text


def _check_number(name: str, value: float, low: float, high: float) -> float:
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low:g} and {high:g}; you gave {value:g}.")
    return value


def check_size(size: str) -> str:
    if size not in SIZE_CHOICES:
        raise BadRequest(
            f"`{size[:40]}` is not a size I know. Choose one of: {', '.join(SIZE_CHOICES)}."
        )
    return size


def template_prompt(template: str | None, words: str) -> str:
    return words if template is None else template.replace(PLACEHOLDER, words)


def _merge_slots(preset: list[tuple[str, float]], mine: Sequence[LoraPick]) -> list[LoraPick]:
    """The member's lora/scale pairs over the preset's LoRAs: a LoRA the member names replaces
    the preset's in that position (or, if the preset has it elsewhere, sets its scale there);
    a scale without a name sets the scale of the preset's LoRA in that position."""
    merged: list[list[Any]] = [[name, scale] for name, scale in preset]
    for position, pick in enumerate(mine):
        name = pick.name.strip()
        if not name:
            if pick.scale is not None and position < len(merged):
                merged[position][1] = pick.scale
            continue
        same = next((m for m in merged if str(m[0]).lower() == name.lower()), None)
        if same is not None:
            if pick.scale is not None:
                same[1] = pick.scale
        elif position < len(preset) and merged[position][0] == preset[position][0]:
            merged[position] = [name, pick.scale]
        else:
            merged.append([name, pick.scale])
    return [LoraPick(name=str(name), scale=scale) for name, scale in merged]


class Presets:
    def __init__(self, presets: PresetRepository, loras: LoraRepository) -> None:
        self._presets = presets
        self._loras = loras

    # ------------------------------------------------------------------ managers' changes

    async def _snapshot(self, who: Requester, slots: Sequence[Slot]) -> list[PresetLora]:
        found: list[PresetLora] = []
        for name, scale in slots:
            if name is None or not name.strip():
                if scale is not None:
                    raise BadRequest("A scale needs its LoRA: give `lora` with `scale`.")
                continue
            lora = await self._loras.get(who.guild_id, check_name(name))
            if lora is None:
                raise BadRequest(f"This server has no LoRA named `{name.strip()}`.")
            if not lora.enabled:
                raise BadRequest(f"The LoRA `{lora.name}` is disabled; enable it first.")
            if any(item.id == lora.id for item in found):
                raise BadRequest(f"The LoRA `{lora.name}` is in the preset twice; name it once.")
            value = lora.default_scale if scale is None else check_scale(scale)
            found.append(PresetLora(id=lora.id, name=lora.name, scale=value))
        return found

    def _fields(self, changes: dict[str, Any]) -> dict[str, Any]:
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None:
                continue
            if key in ("template", "description") and str(value).strip() == "-":
                checked[key] = None if key == "template" else ""
            elif key == "template":
                checked[key] = check_template(value)
            elif key == "guidance":
                checked[key] = _check_number("guidance", value, *GUIDANCE_RANGE)
            elif key == "steps":
                checked[key] = int(_check_number("steps", value, *STEPS_RANGE))
            elif key == "size":
                checked[key] = check_size(value)
            elif key == "description":
                checked[key] = check_description(value)
            else:
                checked[key] = value
        return checked

    async def add(
        self, who: Requester, name: str, slots: Sequence[Slot], **fields: Any
    ) -> PresetView:
        name = check_preset_name(name)
        recipe = PresetRecipe(loras=await self._snapshot(who, slots), **self._fields(fields))
        if recipe.is_empty():
            raise BadRequest("A preset needs at least a LoRA, a template or a parameter.")
        async with _member_facing():
            preset = await self._presets.add(
                who.guild_id,
                name,
                recipe.model_dump(mode="json"),
                actor_id=who.user_id,
                max_per_guild=MAX_PER_SERVER,
            )
        return await self.view(who, preset)

    async def edit(
        self,
        who: Requester,
        name: str,
        slots: Sequence[Slot],
        *,
        new_name: str | None = None,
        clear: str | None = None,
        **fields: Any,
    ) -> PresetView:
        """Only what is given changes. A LoRA position is replaced by a LoRA given for it, or
        removed with `-`; a scale alone changes that position's scale; `clear` lists fields to
        unset (template, guidance, steps, size, acceleration, format, description)."""
        name = check_preset_name(name)
        async with _member_facing():
            preset = await self._presets.get(who.guild_id, name)
            if preset is None:
                raise PresetNotFound(who.guild_id, name)
        recipe = PresetRecipe.model_validate(preset.recipe)
        loras: list[PresetLora | None] = list(recipe.loras)
        for position, (lora, scale) in enumerate(slots):
            if lora is not None and lora.strip() == "-":
                if position < len(loras):
                    loras[position] = None
                continue
            if lora is not None and lora.strip():
                [picked] = await self._snapshot(who, [(lora, scale)])
                if position < len(loras):
                    loras[position] = picked
                else:
                    loras.append(picked)
            elif scale is not None:
                current = loras[position] if position < len(loras) else None
                if current is None:
                    raise BadRequest(f"The preset has no LoRA in position {position + 1}.")
                loras[position] = current.model_copy(update={"scale": check_scale(scale)})
        kept = [lora for lora in loras if lora is not None]
        if len({lora.id for lora in kept}) != len(kept):
            raise BadRequest("That would put the same LoRA in the preset twice.")
        update: dict[str, Any] = {"loras": kept, **self._fields(fields)}
        for word in (clear or "").split(","):
            word = word.strip().lower()
            if not word:
                continue
            if word not in CLEARABLE:
                raise BadRequest(
                    f"`{word[:20]}` can't be cleared; choose from {', '.join(CLEARABLE)}."
                )
            key = "output_format" if word == "format" else word
            update[key] = "" if key == "description" else None
        changed = recipe.model_copy(update=update)
        if new_name is None and changed == recipe:
            raise BadRequest("Nothing to change: give at least one option besides the name.")
        if changed.is_empty():
            raise BadRequest("A preset needs at least a LoRA, a template or a parameter.")
        async with _member_facing():
            preset = await self._presets.update(
                who.guild_id,
                name,
                new_name=None if new_name is None else check_preset_name(new_name),
                recipe=PresetRecipe.model_validate(changed.model_dump()).model_dump(mode="json"),
            )
        log.info("guild %d: preset %r edited by %d", who.guild_id, preset.name, who.user_id)
        return await self.view(who, preset)

    async def remove(self, who: Requester, name: str) -> str:
        async with _member_facing():
            removed = await self._presets.remove(who.guild_id, check_preset_name(name))
        log.info("guild %d: preset %r removed by %d", who.guild_id, removed.name, who.user_id)
        return removed.name

    # ------------------------------------------------------------------ what members see

    async def view(self, who: Requester, preset: Preset) -> PresetView:
        recipe = PresetRecipe.model_validate(preset.recipe)
        loras: list[tuple[str, float]] = []
        problem: str | None = None
        nsfw = False
        for item in recipe.loras:
            lora = await self._loras.get_by_id(item.id)
            if lora is None or lora.guild_id != who.guild_id:
                problem = problem or f"its LoRA `{item.name}` was removed from this server"
                loras.append((item.name, item.scale))
                continue
            if not lora.enabled:
                problem = problem or f"its LoRA `{lora.name}` is disabled on this server"
            nsfw = nsfw or lora.nsfw
            loras.append((lora.name, item.scale))
        return PresetView(preset.name, recipe, loras, problem, nsfw)

    async def listing(self, who: Requester) -> list[PresetView]:
        """Every preset of the server; ones with NSFW LoRAs only in age-restricted channels."""
        views = [await self.view(who, p) for p in await self._presets.list(who.guild_id)]
        return [view for view in views if who.channel_nsfw or not view.nsfw]

    async def search(self, who: Requester, typed: str, *, usable_only: bool) -> list[PresetView]:
        found = await self._presets.search(who.guild_id, typed.strip()[:100])
        views = [await self.view(who, preset) for preset in found]
        if usable_only:
            views = [v for v in views if v.problem is None and (who.channel_nsfw or not v.nsfw)]
        return views

    # ------------------------------------------------------------------ use in an edit

    async def fill(self, who: Requester, options: EditOptions, *, max_steps: int) -> EditOptions:
        """The member's options with the preset's filling what they left unset."""
        name = check_preset_name(options.preset or "")
        preset = await self._presets.get(who.guild_id, name)
        if preset is None:
            raise NotFound(f"This server has no preset named `{name}`. See `/presets`.")
        view = await self.view(who, preset)
        if view.problem is not None:
            raise Refused(
                f"The preset `{view.name}` can't be used: {view.problem}. An admin can fix it "
                "with `/admin preset edit`."
            )
        if view.nsfw and not who.channel_nsfw:
            raise BadRequest(
                f"The preset `{view.name}` uses an NSFW LoRA; use it in an age-restricted channel."
            )
        recipe = view.recipe
        loras = _merge_slots(view.loras, options.loras)
        if len(loras) > MAX_LORAS:
            raise BadRequest(
                f"With the preset `{view.name}` that makes {len(loras)} LoRAs; at most "
                f"{MAX_LORAS} can be combined."
            )
        prompt = template_prompt(recipe.template, check_prompt(options.prompt))
        if len(prompt) > PROMPT_MAX:
            raise BadRequest(
                f"With the preset `{view.name}`'s template the prompt is {len(prompt):,} "
                f"characters; the limit is {PROMPT_MAX:,}. Shorten yours."
            )
        if options.steps is None and recipe.steps is not None and recipe.steps > max_steps:
            raise Refused(
                f"The preset `{view.name}` uses {recipe.steps} steps, more than this channel's "
                f"cap of {max_steps}: set `steps` yourself, or ask an admin to change the preset."
            )
        custom_size = options.width is not None or options.height is not None
        return options.model_copy(
            update={
                "prompt": prompt,
                "loras": loras,
                "preset": view.name,
                "guidance": recipe.guidance if options.guidance is None else options.guidance,
                "steps": recipe.steps if options.steps is None else options.steps,
                "size": recipe.size if options.size is None and not custom_size else options.size,
                "acceleration": options.acceleration or recipe.acceleration,
                "output_format": options.output_format or recipe.output_format,
            }
        )
