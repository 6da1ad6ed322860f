"""The forms and answers of sweeps and comparisons: the Sweep form on a result, the "next
input" form of a sheet's menu (both handled by their custom id, so they survive a restart),
posting a comparison."""

from __future__ import annotations

import io
import logging
import re

import discord

from cogs.utils.context import flux_bot, requester_from
from cogs.utils.render import follow_link, shown
from cogs.utils.replies import reply
from cogs.utils.studio import CELLS_LABEL, started_text, sweep_defaults
from jobs.compare import Comparison
from jobs.errors import BadRequest
from jobs.request import EditRequest
from jobs.sweep_plan import SweepSpec, parse_mode

log = logging.getLogger(__name__)


def _number(name: str, text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text.replace(",", "."))
    except ValueError:
        raise BadRequest(f"{name} must be a number; you gave `{shown(text)}`.") from None


def _whole(name: str, text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number; you gave `{shown(text)}`.") from None


SWEEP_FORM = re.compile(r"form:sweep:(?P<job>\d+)")
CELL_FORM = re.compile(r"form:cell:(?P<sweep>\d+):(?P<cell>\d+)")


def sweep_form(job_id: int, request: EditRequest) -> discord.ui.Modal:
    """The Sweep button's form: what to sweep, prefilled from the result. Its submit is
    handled by its custom id (`sweep_submitted`), so it survives a restart."""
    defaults = sweep_defaults(request)
    form = discord.ui.Modal(title=f"Sweep edit #{job_id}"[:45], custom_id=f"form:sweep:{job_id}")
    for custom_id, label, length in (
        ("lora", "LoRA to sweep (scale mode)", 100),
        ("from", "From scale (0–4)", 24),
        ("to", "To scale (0–4)", 24),
        ("cells", CELLS_LABEL, 4),
        ("mode", "Mode: scale, or combinations of its LoRAs", 20),
    ):
        form.add_item(
            discord.ui.TextInput(
                label=label,
                custom_id=custom_id,
                default=defaults[custom_id],
                required=False,
                max_length=length,
            )
        )
    return form


async def sweep_submitted(
    interaction: discord.Interaction, match: re.Match[str], values: dict[str, str]
) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    spec = SweepSpec(
        mode=parse_mode(values.get("mode")),
        lora=values.get("lora", "").strip() or None,
        start=_number("From", values.get("from", "")),
        stop=_number("To", values.get("to", "")),
        cells=_whole("Cells", values.get("cells", "")),
    )
    started = await flux_bot(interaction).jobs.sweeps.start_from_result(
        requester_from(interaction), int(match["job"]), spec
    )
    await reply(interaction, started_text(started.sweep, started.recipe))


def cell_form(sweep_id: int, cell: int, label: str) -> discord.ui.Modal:
    """A sheet's "next input" menu: the prompt for an edit of the picked cell's image."""
    form = discord.ui.Modal(
        title=f"Sweep #{sweep_id}, cell {cell + 1} as input"[:45],
        custom_id=f"form:cell:{sweep_id}:{cell}",
    )
    form.add_item(
        discord.ui.TextInput(
            label=f"Prompt for the next edit ({label})"[:45],
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            max_length=2000,
        )
    )
    return form


async def cell_submitted(
    interaction: discord.Interaction, match: re.Match[str], values: dict[str, str]
) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    bot = flux_bot(interaction)
    sweep_id, cell = int(match["sweep"]), int(match["cell"])
    job = await bot.jobs.sweeps.next_input(
        requester_from(interaction), sweep_id, cell, values.get("prompt", "")
    )
    bot.parts.publisher.remember(job.id, interaction)
    await reply(
        interaction,
        f"Started edit #{job.id} from cell {cell + 1} of sweep #{sweep_id}.{follow_link(job)}",
    )


def comparison_files(comparison: Comparison) -> list[discord.File]:
    return [
        discord.File(io.BytesIO(image.data), filename=image.filename, spoiler=image.spoiler)
        for image in (comparison.pair, comparison.flip)
    ]


async def post_comparison(
    interaction: discord.Interaction, comparison: Comparison, result: discord.Message | None
) -> None:
    """In the channel, replying to the result: the pair and the flip. The member who asked is
    named, not pinged."""
    channel = interaction.channel
    if not isinstance(channel, discord.abc.Messageable):
        raise BadRequest("I can't post in this channel.")
    reference = result.to_reference(fail_if_not_exists=False) if result is not None else None
    text = f"Before and after of edit #{comparison.job_id}, for {interaction.user.mention}"
    try:
        await channel.send(
            text,
            files=comparison_files(comparison),
            reference=reference or discord.utils.MISSING,
            allowed_mentions=discord.AllowedMentions.none(),
        )
    except discord.HTTPException as error:
        log.info("could not post a comparison: %s", error)
        raise BadRequest(
            "I couldn't post the comparison here (I need Send Messages and Attach Files)."
        ) from None
    await reply(interaction, f"Posted the before and after of edit #{comparison.job_id}.")
