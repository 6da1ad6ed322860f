"""How training looks in Discord: the proposal with its Confirm and Cancel buttons (persistent:
the proposal is stored, its key is in the custom_id), the draft set's pages of thumbnails, and
a trained LoRA's recipe on its card."""

from __future__ import annotations

import io
import re
from typing import Any

import discord

from cogs.utils.context import flux_bot, requester_from
from cogs.utils.render import follow_link, quote_prompt, timestamp
from cogs.utils.ui import AnswersErrors
from jobs.draft_pairs import PairsPage
from jobs.records import AnyJob
from jobs.service import JobService
from jobs.text import plural
from jobs.trainer import Proposal

PROPOSAL_TEMPLATE = r"train:(?P<key>[0-9a-f]{16}):(?P<action>go|stop)"
PAIRS_PAGE_TEMPLATE = r"pairs:(?P<page>\d+):[PN]"


def proposal_text(proposal: Proposal) -> str:
    request = proposal.request
    source = "the zip" if request.source == "zip" else "the draft set"
    lines = [
        f"Train `{request.name}` from {plural(request.pairs, 'pair')} ({source})?",
        f"- {request.steps:,} steps · learning rate {request.learning_rate:g} · "
        f"{plural(request.inputs_per_pair, 'input')} per pair",
    ]
    if request.caption:
        lines.append(
            f"- Caption for pairs without their own: “{quote_prompt(request.caption, 200)}”"
        )
    lines.append(
        f"- Estimated cost: ${request.training_cost_usd:.2f} for the training + "
        f"${request.sample_cost_usd:.3f} for one sample edit = **${request.estimate_usd:.2f}**, "
        "charged to this server's monthly budget (no one's quota). fal's price for the "
        "trainer is unconfirmed, so this is an estimate."
    )
    if proposal.budget_usd:
        left = max(0.0, proposal.budget_usd - proposal.spent_usd)
        lines.append(
            f"- Budget: ${proposal.spent_usd:.2f} of ${proposal.budget_usd:.2f} spent this "
            f"month; ${left:.2f} left."
        )
    if proposal.replaces:
        lines.append(f"- Retrains the existing `{request.name}`; its history is kept.")
    lines.append(
        "- A training takes tens of minutes. Its status message here shows its progress; when "
        "it is done the LoRA is registered and a before | result | expected sample is posted."
    )
    lines += [f"⚠️ {warning}" for warning in request.warnings]
    return "\n".join(lines)


def proposal_view(key: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ProposalButton(key, "go"))
    view.add_item(ProposalButton(key, "stop"))
    return view


def started_text(job: AnyJob) -> str:
    return (
        f"Training #{job.id} started; its cost is reserved from the server's budget."
        f"{follow_link(job)}"
    )


class ProposalButton(
    AnswersErrors, discord.ui.DynamicItem[discord.ui.Button[Any]], template=PROPOSAL_TEMPLATE
):
    """Confirm or Cancel a proposed training, before or after a restart (the proposal lives
    in the database under the key in the custom_id)."""

    def __init__(self, key: str, action: str) -> None:
        go = action == "go"
        super().__init__(
            discord.ui.Button(
                label="Confirm" if go else "Cancel",
                style=discord.ButtonStyle.success if go else discord.ButtonStyle.secondary,
                custom_id=f"train:{key}:{action}",
            )
        )
        self.key = key
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ProposalButton:
        return cls(match["key"], match["action"])

    async def run(self, interaction: discord.Interaction) -> None:
        jobs = flux_bot(interaction).jobs
        who = requester_from(interaction)
        if self.action == "stop":
            request = await jobs.training.discard(who, self.key)
            await interaction.response.edit_message(
                content=f"Cancelled: `{request.name}` was not trained and nothing was charged.",
                view=None,
            )
            return
        await interaction.response.defer()
        job = await jobs.training.confirm(who, self.key)
        await interaction.edit_original_response(content=started_text(job), view=None)


# ---------------------------------------------------------------------------- the draft set


async def pairs_page(
    jobs: JobService, interaction: discord.Interaction, page: int
) -> tuple[str, list[discord.File], discord.ui.View | None]:
    shown: PairsPage = await jobs.pairs.page(requester_from(interaction), page)
    if not shown.pairs:
        return (
            "The draft set is empty. Add pairs with `/admin pairs add before after`, then "
            "train with `/admin lora train name` (no zip).",
            [],
            None,
        )
    lines = [f"Draft set: {plural(shown.total, 'pair')} · page {shown.page + 1} of {shown.pages}"]
    for position, pair in shown.pairs:
        instruction = pair.instruction or "(no instruction: the caption option will be used)"
        extras = len(pair.inputs) - 1
        more = f" · +{plural(extras, 'extra input')}" if extras else ""
        lines.append(
            f"**{position}.** {quote_prompt(instruction, 150)}{more} · added by "
            f"<@{pair.added_by}> {timestamp(pair.created_at)}"
        )
    files = []
    if shown.sheet is not None:
        files.append(discord.File(io.BytesIO(shown.sheet), f"pairs-{shown.page + 1}.png"))
    view = discord.ui.View(timeout=None)
    view.add_item(PairsPageButton(shown.page - 1, "Previous", disabled=shown.page == 0))
    view.add_item(PairsPageButton(shown.page + 1, "Next", disabled=shown.page >= shown.pages - 1))
    return "\n".join(lines), files, view


class PairsPageButton(
    AnswersErrors, discord.ui.DynamicItem[discord.ui.Button[Any]], template=PAIRS_PAGE_TEMPLATE
):
    def __init__(self, page: int, label: str, disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"pairs:{max(0, page)}:{label[0]}",
                disabled=disabled,
            )
        )
        self.page = max(0, page)

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> PairsPageButton:
        return cls(int(match["page"]), "Previous")

    async def run(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        text, files, view = await pairs_page(flux_bot(interaction).jobs, interaction, self.page)
        await interaction.edit_original_response(content=text, attachments=files, view=view or None)
