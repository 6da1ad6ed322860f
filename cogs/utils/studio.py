"""How sweeps and comparisons look in Discord: the sweep's status line, the sheet's embed and its
menus (persistent: the sweep id lives in the custom_id), the Sweep modal, and the text members
read when a sweep starts."""

from __future__ import annotations

from typing import Final

import discord

from cogs.utils.render import (
    FIELD_MAX,
    MESSAGE_MAX,
    message_link,
    quote_prompt,
    size_text,
    timestamp,
)
from jobs.publisher import SheetCellInfo, SheetDelivery, SweepStatus
from jobs.request import EditRequest
from jobs.sweep_plan import (
    CELLS_RANGE,
    DEFAULT_CELLS,
    DEFAULT_FROM,
    DEFAULT_TO,
    SweepRecipe,
    range_text,
)
from jobs.text import plural
from storage.sweeps import Sweep

SHEET_TEMPLATE: Final = r"sweep:(?P<id>\d+):(?P<action>full|next)"
SHEET_ACTIONS: Final = {
    "full": "See a cell at full size…",
    "next": "Use a cell as the next input…",
}
OPTION_MAX = 100


def status_nonce(sweep_id: int) -> str:
    return f"flux-sws-{sweep_id}"


def sheet_nonce(sweep_id: int) -> str:
    """Deterministic per sweep: a repeat after a restart gets the same message back."""
    return f"flux-sheet-{sweep_id}"


def _other_loras(recipe: SweepRecipe) -> str:
    if recipe.mode == "combinations":
        return ""
    others = [lora for lora in recipe.request.loras if lora.name != recipe.lora]
    return ", ".join(f"`{lora.name}` × {lora.scale:g}" for lora in others)


def sweep_status_text(sweep: Sweep, update: SweepStatus) -> str:
    recipe = update.recipe
    total = len(recipe.labels)
    head = f"**Sweep #{sweep.id}** for <@{sweep.user_id}> · "
    if update.phase == "running":
        head += f"🎨 {update.done} of {total} cells done"
        if update.failed:
            head += f" ({update.failed} failed)"
        head += f" · started {timestamp(update.started_at)}"
    elif update.phase == "posting":
        head += "📤 Drawing the sheet…"
    elif update.phase == "done":
        head += "✅ Done"
        if update.sheet_message_id is not None:
            link = message_link(sweep.guild_id, sweep.channel_id, update.sheet_message_id)
            head += f": [the sheet]({link})"
        if update.failed:
            head += f" · {plural(update.failed, 'cell')} failed and refunded"
    else:
        head += "❌ Failed"
    lines = [head]
    if update.note:
        lines.append(update.note)
    lines.append(f"> {quote_prompt(recipe.request.prompt, 300)}")
    others = _other_loras(recipe)
    extra = f" · with {others}" if others else ""
    lines.append(
        f"-# {range_text(recipe)}{extra} · seed {recipe.request.seed} · "
        f"{size_text(recipe.request)} · about ${recipe.cost_usd:.3f}"
    )
    return "\n".join(lines)[:MESSAGE_MAX]


def _cell_lines(cells: list[SheetCellInfo]) -> str:
    lines = []
    for info in cells:
        line = f"{info.cell + 1}. {discord.utils.escape_markdown(info.label)}"
        if not info.ok:
            line += f" — {info.note or 'failed'} (not charged)"
        lines.append(line)
    return "\n".join(lines)[:FIELD_MAX]


def sheet_embed(sweep: Sweep, sheet: SheetDelivery) -> discord.Embed:
    recipe, request = sheet.recipe, sheet.recipe.request
    embed = discord.Embed(
        title=f"Sweep #{sweep.id}",
        description=quote_prompt(request.prompt),
        colour=discord.Colour.blurple(),
    )
    embed.add_field(name="Swept", value=range_text(recipe)[:FIELD_MAX], inline=False)
    others = _other_loras(recipe)
    if others:
        embed.add_field(name="With", value=others[:FIELD_MAX], inline=False)
    embed.add_field(name="Cells", value=_cell_lines(sheet.cells), inline=False)
    embed.add_field(name="Seed", value=str(request.seed))
    embed.add_field(name="Guidance", value=f"{request.guidance:g}")
    embed.add_field(name="Steps", value=str(request.steps))
    embed.add_field(name="Size", value=size_text(request))
    embed.add_field(name="Cost", value=f"${sheet.cost_usd:.3f}")
    if sheet.parent_result is not None:
        channel_id, message_id = sheet.parent_result
        link = message_link(sweep.guild_id, channel_id, message_id)
        embed.add_field(name="Made from", value=f"[#{sweep.parent_job_id}]({link})")
    notes = []
    failed = sum(1 for info in sheet.cells if not info.ok)
    if failed:
        notes.append(f"{plural(failed, 'cell')} failed and refunded")
    if sheet.reencoded:
        notes.append("re-encoded to fit the upload limit")
    notes.append("pick a cell below for full size or as your next input")
    embed.set_footer(text=" · ".join(notes)[:2048])
    return embed


def sheet_view(sweep_id: int, cells: list[SheetCellInfo]) -> discord.ui.View | None:
    """Two menus over the cells that have an image; none when no cell does."""
    options = [
        discord.SelectOption(
            label=f"{info.cell + 1}. {info.label}"[:OPTION_MAX], value=str(info.cell)
        )
        for info in cells
        if info.ok
    ]
    if not options:
        return None
    view = discord.ui.View(timeout=None)
    for action, placeholder in SHEET_ACTIONS.items():
        view.add_item(
            discord.ui.Select(
                custom_id=f"sweep:{sweep_id}:{action}", placeholder=placeholder, options=options
            )
        )
    return view


def started_text(sweep: Sweep, recipe: SweepRecipe) -> str:
    link = ""
    if sweep.status_message_id is not None:
        url = message_link(sweep.guild_id, sweep.channel_id, sweep.status_message_id)
        link = f" Follow it [here]({url})."
    return (
        f"Sweep #{sweep.id} is on its way: {plural(len(recipe.labels), 'image')} with one seed "
        f"({range_text(recipe)}), about ${recipe.cost_usd:.3f}.{link}"
    )


def scale_text(value: float) -> str:
    return f"{value:g}"


def sweep_defaults(request: EditRequest) -> dict[str, str]:
    """What the Sweep modal shows first for a result."""
    return {
        "lora": request.loras[0].name if request.loras else "",
        "from": scale_text(DEFAULT_FROM),
        "to": scale_text(DEFAULT_TO),
        "cells": str(DEFAULT_CELLS),
        "mode": "scale",
    }


CELLS_LABEL = f"Cells ({CELLS_RANGE[0]}–{CELLS_RANGE[1]}; each is one image of your quota)"
