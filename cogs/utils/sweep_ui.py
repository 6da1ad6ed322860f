"""The forms and answers of sweeps and comparisons: the Sweep modal on a result, the "next
input" modal of a sheet's menu, posting a comparison."""

from __future__ import annotations

import io
import logging

import discord

from cogs.utils.context import flux_bot, requester_from
from cogs.utils.render import follow_link, shown
from cogs.utils.replies import reply
from cogs.utils.studio import CELLS_LABEL, started_text, sweep_defaults
from cogs.utils.ui import Modal
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


class SweepModal(Modal):
    """The Sweep button: what to sweep, prefilled from the result."""

    def __init__(self, job_id: int, request: EditRequest) -> None:
        super().__init__(title=f"Sweep edit #{job_id}"[:45], timeout=900)
        self.job_id = job_id
        defaults = sweep_defaults(request)
        self.lora: discord.ui.TextInput[SweepModal] = discord.ui.TextInput(
            label="LoRA to sweep (scale mode)",
            default=defaults["lora"],
            required=False,
            max_length=100,
        )
        self.start: discord.ui.TextInput[SweepModal] = discord.ui.TextInput(
            label="From scale (0–4)", default=defaults["from"], required=False, max_length=24
        )
        self.upto: discord.ui.TextInput[SweepModal] = discord.ui.TextInput(
            label="To scale (0–4)", default=defaults["to"], required=False, max_length=24
        )
        self.cells: discord.ui.TextInput[SweepModal] = discord.ui.TextInput(
            label=CELLS_LABEL, default=defaults["cells"], required=False, max_length=4
        )
        self.mode: discord.ui.TextInput[SweepModal] = discord.ui.TextInput(
            label="Mode: scale, or combinations of its LoRAs",
            default=defaults["mode"],
            required=False,
            max_length=20,
        )
        for field in (self.lora, self.start, self.upto, self.cells, self.mode):
            self.add_item(field)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        spec = SweepSpec(
            mode=parse_mode(self.mode.value),
            lora=self.lora.value.strip() or None,
            start=_number("From", self.start.value),
            stop=_number("To", self.upto.value),
            cells=_whole("Cells", self.cells.value),
        )
        started = await flux_bot(interaction).jobs.sweeps.start_from_result(
            requester_from(interaction), self.job_id, spec
        )
        await reply(interaction, started_text(started.sweep, started.recipe))


class NextInputModal(Modal):
    """A sheet's "next input" menu: the prompt for an edit of the picked cell's image."""

    def __init__(self, sweep_id: int, cell: int, label: str) -> None:
        super().__init__(title=f"Sweep #{sweep_id}, cell {cell + 1} as input"[:45], timeout=900)
        self.sweep_id = sweep_id
        self.cell = cell
        self.prompt: discord.ui.TextInput[NextInputModal] = discord.ui.TextInput(
            label=f"Prompt for the next edit ({label})"[:45],
            style=discord.TextStyle.paragraph,
            max_length=2000,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = flux_bot(interaction)
        job = await bot.jobs.sweeps.next_input(
            requester_from(interaction), self.sweep_id, self.cell, self.prompt.value
        )
        bot.parts.publisher.remember(job.id, interaction)
        await reply(
            interaction,
            f"Started edit #{job.id} from cell {self.cell + 1} of sweep #{self.sweep_id}."
            f"{follow_link(job)}",
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
