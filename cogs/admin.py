"""`/admin`: the registry, quotas, budget and policy. Only managers get past interaction_check."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.buttons import cancel_list_view
from cogs.utils.charts import render_spend_chart
from cogs.utils.context import AttachmentInput, requester_from
from cogs.utils.lora_ui import ConfirmRemove, admin_lora_autocomplete, lora_card
from cogs.utils.onboarding import checklist_text, granted_from, granted_in
from cogs.utils.preset_ui import (
    ACCELERATION_OPTIONS,
    FORMAT_OPTIONS,
    SIZE_OPTIONS,
    admin_preset_autocomplete,
    preset_card,
)
from cogs.utils.render import MESSAGE_MAX, timestamp
from cogs.utils.replies import reply
from cogs.utils.training_ui import (
    PairsPageButton,
    ProposalButton,
    pairs_page,
    proposal_text,
    proposal_view,
)
from jobs.runner import cancellable
from jobs.server_policy import NOT_MANAGER, ONLY_OWNERS_NAME_MANAGERS
from jobs.setup_check import ChannelFacts
from jobs.trainer import TrainOptions

if TYPE_CHECKING:
    from bot import FluxBot

__all__ = ["NOT_MANAGER", "ONLY_OWNERS_NAME_MANAGERS", "Admin"]

JOBS_SHOWN = 25  # Discord allows 25 buttons on a message

log = logging.getLogger(__name__)


class NotManager(app_commands.CheckFailure):
    """The member may not use `/admin`; its text says how a server fixes that."""


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Admin(commands.GroupCog, group_name="admin", group_description="Manage the edit bot"):
    lora = app_commands.Group(name="lora", description="Manage this server's LoRAs")
    quota = app_commands.Group(name="quota", description="Members' image quotas")
    budget = app_commands.Group(name="budget", description="The server's monthly spend cap")
    settings = app_commands.Group(name="settings", description="Server policy for edits")
    preset = app_commands.Group(
        name="preset", description="Presets: LoRAs, a prompt template and settings under a name"
    )
    pairs = app_commands.Group(
        name="pairs", description="The draft set of before/after pairs to train a LoRA from"
    )

    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # Discord's default_permissions can be overridden per role by the server; check again.
        # Raising (not replying here) lets the error handler give the one and only answer: a
        # False return would make discord.py raise its own CheckFailure and answer a second time.
        if await self.bot.jobs.policy.is_manager(requester_from(interaction)):
            return True
        raise NotManager(NOT_MANAGER)

    # ------------------------------------------------------------------ registry

    @lora.command(name="add", description="Register a LoRA for this server")
    @app_commands.describe(
        name="1–32 letters, digits, - or _; unique on this server",
        path="https URL of a .safetensors file, or a Hugging Face repo id (owner/repo)",
        scale="Default strength, 0–4 (default 1)",
        triggers="Trigger words, comma-separated; added to prompts that lack them",
        description="What the LoRA does, shown to members",
        nsfw="Only usable in age-restricted channels",
    )
    async def add(
        self,
        interaction: discord.Interaction,
        name: str,
        path: str,
        scale: app_commands.Range[float, 0.0, 4.0] = 1.0,
        triggers: str | None = None,
        description: str | None = None,
        nsfw: bool = False,
    ) -> None:
        lora = await self.bot.jobs.registry.add(
            requester_from(interaction),
            name,
            path,
            scale=scale,
            triggers=triggers,
            description=description,
            nsfw=nsfw,
        )
        await reply(
            interaction,
            f"Added `{lora.name}`. Members can use it in `/edit` now.",
            embed=lora_card(lora),
        )

    @lora.command(name="edit", description="Change a LoRA; only the options you give change")
    @app_commands.describe(
        name="The LoRA to change",
        new_name="Rename it",
        path="New https URL or Hugging Face repo id",
        scale="New default strength, 0–4",
        triggers="New trigger words, comma-separated (replaces the old ones; '-' clears)",
        description="New description ('-' clears)",
        nsfw="Only usable in age-restricted channels",
    )
    @app_commands.autocomplete(name=admin_lora_autocomplete)
    async def edit(
        self,
        interaction: discord.Interaction,
        name: str,
        new_name: str | None = None,
        path: str | None = None,
        scale: app_commands.Range[float, 0.0, 4.0] | None = None,
        triggers: str | None = None,
        description: str | None = None,
        nsfw: bool | None = None,
    ) -> None:
        edited = await self.bot.jobs.registry.edit(
            requester_from(interaction),
            name,
            new_name=new_name,
            path=path,
            scale=scale,
            triggers=triggers,
            description=description,
            nsfw=nsfw,
        )
        lora = edited.lora
        if edited.changed:
            text = f"Updated `{lora.name}` (version {lora.version})."
        else:
            text = f"Nothing changed: `{lora.name}` already has those settings."
        await reply(interaction, text, embed=lora_card(lora))

    async def _set_enabled(
        self, interaction: discord.Interaction, name: str, enabled: bool
    ) -> None:
        who = requester_from(interaction)
        lora = await self.bot.jobs.registry.set_enabled(who, name, enabled)
        word = "enabled" if enabled else "disabled"
        await reply(interaction, f"`{lora.name}` is {word}.")

    @lora.command(name="disable", description="Hide a LoRA from members without deleting it")
    @app_commands.autocomplete(name=admin_lora_autocomplete)
    async def disable(self, interaction: discord.Interaction, name: str) -> None:
        await self._set_enabled(interaction, name, False)

    @lora.command(name="enable", description="Make a disabled LoRA usable again")
    @app_commands.autocomplete(name=admin_lora_autocomplete)
    async def enable(self, interaction: discord.Interaction, name: str) -> None:
        await self._set_enabled(interaction, name, True)

    @lora.command(name="remove", description="Delete a LoRA (asks to confirm)")
    @app_commands.autocomplete(name=admin_lora_autocomplete)
    async def remove(self, interaction: discord.Interaction, name: str) -> None:
        lora = await self.bot.jobs.registry.to_remove(requester_from(interaction), name)
        view = ConfirmRemove(lora)
        await reply(
            interaction,
            f"Remove `{lora.name}` for good? Past results keep their recipe; reruns of them "
            "will be refused.",
            view=view,
        )
        view.interaction = interaction

    # ------------------------------------------------------------------ presets

    @preset.command(name="add", description="Bundle up to three LoRAs, a template and settings")
    @app_commands.describe(
        name="1–32 letters, digits, - or _; unique on this server",
        lora="A LoRA of the preset",
        scale="Its strength, 0–4 (default: the LoRA's own)",
        lora2="A second LoRA",
        scale2="Its strength, 0–4",
        lora3="A third LoRA",
        scale3="Its strength, 0–4",
        template="The prompt, with {prompt} where the member's words go",
        guidance="Guidance, 0–20",
        steps="Steps, 4–50",
        size="Output size",
        acceleration="Acceleration",
        format="Output format",
        description="What the preset is for, shown to members",
    )
    @app_commands.choices(size=SIZE_OPTIONS, acceleration=ACCELERATION_OPTIONS)
    @app_commands.choices(format=FORMAT_OPTIONS)
    @app_commands.autocomplete(lora=admin_lora_autocomplete, lora2=admin_lora_autocomplete)
    @app_commands.autocomplete(lora3=admin_lora_autocomplete)
    async def preset_add(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, 100],
        lora: str | None = None,
        scale: app_commands.Range[float, 0.0, 4.0] | None = None,
        lora2: str | None = None,
        scale2: app_commands.Range[float, 0.0, 4.0] | None = None,
        lora3: str | None = None,
        scale3: app_commands.Range[float, 0.0, 4.0] | None = None,
        template: app_commands.Range[str, 1, 1000] | None = None,
        guidance: app_commands.Range[float, 0.0, 20.0] | None = None,
        steps: app_commands.Range[int, 4, 50] | None = None,
        size: str | None = None,
        acceleration: str | None = None,
        format: str | None = None,
        description: app_commands.Range[str, 1, 300] | None = None,
    ) -> None:
        view = await self.bot.jobs.presets.add(
            requester_from(interaction),
            name,
            [(lora, scale), (lora2, scale2), (lora3, scale3)],
            template=template,
            guidance=guidance,
            steps=steps,
            size=size,
            acceleration=acceleration,
            output_format=format,
            description=description,
        )
        text = f"Added the preset `{view.name}`. Members use it with `/edit preset:{view.name}`."
        await reply(interaction, text, embed=preset_card(view))

    @preset.command(name="edit", description="Change a preset; only the options you give change")
    @app_commands.describe(
        name="The preset to change",
        new_name="Rename it",
        lora="Replace the first LoRA ('-' removes it)",
        scale="The first LoRA's strength, 0–4",
        lora2="Replace the second LoRA ('-' removes it)",
        scale2="The second LoRA's strength, 0–4",
        lora3="Replace the third LoRA ('-' removes it)",
        scale3="The third LoRA's strength, 0–4",
        template="New template with {prompt} ('-' clears)",
        guidance="Guidance, 0–20",
        steps="Steps, 4–50",
        size="Output size",
        acceleration="Acceleration",
        format="Output format",
        description="New description ('-' clears)",
        clear="Settings to unset, comma-separated: guidance, steps, size, acceleration, format",
    )
    @app_commands.choices(size=SIZE_OPTIONS, acceleration=ACCELERATION_OPTIONS)
    @app_commands.choices(format=FORMAT_OPTIONS)
    @app_commands.autocomplete(name=admin_preset_autocomplete, lora=admin_lora_autocomplete)
    @app_commands.autocomplete(lora2=admin_lora_autocomplete, lora3=admin_lora_autocomplete)
    async def preset_edit(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, 100],
        new_name: app_commands.Range[str, 1, 100] | None = None,
        lora: str | None = None,
        scale: app_commands.Range[float, 0.0, 4.0] | None = None,
        lora2: str | None = None,
        scale2: app_commands.Range[float, 0.0, 4.0] | None = None,
        lora3: str | None = None,
        scale3: app_commands.Range[float, 0.0, 4.0] | None = None,
        template: app_commands.Range[str, 1, 1000] | None = None,
        guidance: app_commands.Range[float, 0.0, 20.0] | None = None,
        steps: app_commands.Range[int, 4, 50] | None = None,
        size: str | None = None,
        acceleration: str | None = None,
        format: str | None = None,
        description: app_commands.Range[str, 1, 300] | None = None,
        clear: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        view = await self.bot.jobs.presets.edit(
            requester_from(interaction),
            name,
            [(lora, scale), (lora2, scale2), (lora3, scale3)],
            new_name=new_name,
            clear=clear,
            template=template,
            guidance=guidance,
            steps=steps,
            size=size,
            acceleration=acceleration,
            output_format=format,
            description=description,
        )
        await reply(interaction, f"Updated the preset `{view.name}`.", embed=preset_card(view))

    @preset.command(name="remove", description="Delete a preset (past results keep their recipe)")
    @app_commands.autocomplete(name=admin_preset_autocomplete)
    async def preset_remove(
        self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 100]
    ) -> None:
        removed = await self.bot.jobs.presets.remove(requester_from(interaction), name)
        await reply(interaction, f"Removed the preset `{removed}`.")

    @lora.command(name="train", description="Train an edit LoRA from before/after pairs")
    @app_commands.describe(
        name="The new LoRA's name (or, with replace, the one to retrain)",
        pairs="Zip of ROOT_start.png + ROOT_end.png pairs (optional ROOT_start2-4, ROOT.txt); "
        "none: the draft set",
        steps="Training steps, 100–10,000 (default 1,000)",
        learning_rate="Learning rate (default 0.00005)",
        caption="The edit instruction for pairs without a ROOT.txt; also the LoRA's trigger",
        description="What the LoRA does, shown to members",
        nsfw="Only usable in age-restricted channels",
        replace="Retrain the existing LoRA of this name; its history is kept",
    )
    async def train(
        self,
        interaction: discord.Interaction,
        name: str,
        pairs: discord.Attachment | None = None,
        steps: app_commands.Range[int, 100, 10_000] | None = None,
        learning_rate: app_commands.Range[float, 0.000001, 0.01] | None = None,
        caption: str | None = None,
        description: str | None = None,
        nsfw: bool = False,
        replace: bool = False,
    ) -> None:
        """Checks and prices everything, spends nothing: the answer asks to confirm the cost."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        who = requester_from(interaction)
        options = TrainOptions(
            steps=steps,
            learning_rate=learning_rate,
            caption=caption,
            description=description,
            nsfw=nsfw,
            replace=replace,
        )
        training = self.bot.jobs.training
        if pairs is not None:
            proposal = await training.propose_zip(
                who, name, AttachmentInput("pairs", pairs), options
            )
        else:
            proposal = await training.propose_draft(who, name, options)
        await reply(interaction, proposal_text(proposal), view=proposal_view(proposal.key))

    # ------------------------------------------------------------------ the draft set of pairs

    @pairs.command(name="add", description="Add a before/after pair to the draft set")
    @app_commands.describe(
        before="The input image",
        after="The wanted output",
        instruction="The edit this pair shows (else the caption option of the training)",
        before2="A second input of this pair (optional)",
        before3="A third input of this pair (optional)",
        before4="A fourth input of this pair (optional)",
    )
    async def pairs_add(
        self,
        interaction: discord.Interaction,
        before: discord.Attachment,
        after: discord.Attachment,
        instruction: str | None = None,
        before2: discord.Attachment | None = None,
        before3: discord.Attachment | None = None,
        before4: discord.Attachment | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        extras = [
            AttachmentInput(label, attachment)
            for label, attachment in (
                ("before2", before2),
                ("before3", before3),
                ("before4", before4),
            )
            if attachment is not None
        ]
        position, warnings = await self.bot.jobs.pairs.add(
            requester_from(interaction),
            AttachmentInput("before", before),
            AttachmentInput("after", after),
            extras,
            instruction,
        )
        text = f"Added pair {position} to the draft set. See it with `/admin pairs list`."
        text += "".join(f"\n⚠️ {warning}" for warning in warnings)
        await reply(interaction, text)

    @pairs.command(name="list", description="The draft set's pairs, as thumbnails")
    @app_commands.describe(page="Page to show (5 pairs each)")
    async def pairs_list(
        self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 1000] = 1
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        text, files, view = await pairs_page(self.bot.jobs, interaction, page - 1)
        missing = discord.utils.MISSING
        await interaction.followup.send(
            text,
            ephemeral=True,
            files=files or missing,
            view=view or missing,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @pairs.command(name="remove", description="Remove pair N from the draft set")
    @app_commands.describe(number="The pair's number in /admin pairs list")
    async def pairs_remove(
        self, interaction: discord.Interaction, number: app_commands.Range[int, 1, 1000]
    ) -> None:
        left = await self.bot.jobs.pairs.remove(requester_from(interaction), number)
        await reply(
            interaction,
            f"Removed pair {number}; the draft set has {left} left (later pairs moved up one).",
        )

    @pairs.command(name="clear", description="Empty the draft set")
    async def pairs_clear(self, interaction: discord.Interaction) -> None:
        removed = await self.bot.jobs.pairs.clear(requester_from(interaction))
        await reply(interaction, f"Removed all {removed} pairs; the draft set is empty.")

    # ------------------------------------------------------------------ quotas

    @quota.command(name="default", description="Images each member may make per window")
    @app_commands.describe(
        images="Images per window (0 blocks edits)", window_hours="Window length"
    )
    async def quota_default(
        self,
        interaction: discord.Interaction,
        images: app_commands.Range[int, 0, 10_000],
        window_hours: app_commands.Range[int, 1, 24 * 31] | None = None,
    ) -> None:
        policy = self.bot.jobs.policy
        settings = await policy.set_default_quota(requester_from(interaction), images, window_hours)
        await reply(
            interaction,
            f"Members may now make {images} images per {settings.window_hours} h "
            "(role and member overrides still apply).",
        )

    @quota.command(name="role", description="A quota for members with this role")
    @app_commands.describe(images="Images per window; the highest matching role wins (-1 removes)")
    async def quota_role(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        images: app_commands.Range[int, -1, 10_000],
    ) -> None:
        who = requester_from(interaction)
        settings = await self.bot.jobs.policy.set_override(who, "role", role.id, images)
        if images < 0:
            text = f"Removed the quota override for {role.mention}."
        else:
            hours = settings.window_hours
            text = f"Members with {role.mention} may make {images} images per {hours} h."
        await reply(interaction, text)

    @quota.command(name="user", description="A quota for one member (beats role quotas)")
    @app_commands.describe(images="Images per window (-1 removes the override)")
    async def quota_user(
        self,
        interaction: discord.Interaction,
        member: discord.Member,
        images: app_commands.Range[int, -1, 10_000],
    ) -> None:
        who = requester_from(interaction)
        settings = await self.bot.jobs.policy.set_override(who, "user", member.id, images)
        if images < 0:
            text = f"Removed the quota override for {member.mention}."
        else:
            text = f"{member.mention} may make {images} images per {settings.window_hours} h."
        await reply(interaction, text)

    @quota.command(name="exempt", description="Members with this role have no quota")
    @app_commands.describe(remove="Take the exemption away again")
    async def quota_exempt(
        self, interaction: discord.Interaction, role: discord.Role, remove: bool = False
    ) -> None:
        await self.bot.jobs.policy.set_exempt(requester_from(interaction), role.id, remove=remove)
        word = "no longer exempt" if remove else "exempt from quotas (the budget still applies)"
        await reply(interaction, f"{role.mention} is {word}.")

    @quota.command(name="reset", description="Forgive a member's usage in the current window")
    async def quota_reset(self, interaction: discord.Interaction, member: discord.Member) -> None:
        await self.bot.jobs.policy.reset_quota(requester_from(interaction), member.id)
        await reply(interaction, f"{member.mention}'s quota window starts fresh.")

    # ------------------------------------------------------------------ budget

    @budget.command(name="set", description="Monthly USD cap for the whole server (0 = no cap)")
    async def budget_set(
        self, interaction: discord.Interaction, usd: app_commands.Range[float, 0.0, 1_000_000.0]
    ) -> None:
        await self.bot.jobs.policy.set_budget(requester_from(interaction), usd)
        text = "No monthly cap." if usd == 0 else f"Monthly budget set to ${usd:,.2f}."
        await reply(interaction, text)

    @budget.command(name="show", description="Spend this month against the budget")
    async def budget_show(self, interaction: discord.Interaction) -> None:
        budget = await self.bot.jobs.policy.budget(requester_from(interaction))
        cap = budget.cap_usd
        text = f"Spent this month: ${budget.spent_usd:,.2f}"
        text += f" of ${cap:,.2f}." if cap else " (no cap)."
        await reply(interaction, text)

    # ------------------------------------------------------------------ settings

    @settings.command(name="show", description="Every policy setting of this server")
    async def settings_show(self, interaction: discord.Interaction) -> None:
        s = await self.bot.jobs.policy.show(requester_from(interaction))
        roles = ", ".join(f"<@&{r}> {n}" for r, n in s.role_quotas.items()) or "none"
        users = ", ".join(f"<@{u}> {n}" for u, n in s.user_quotas.items()) or "none"
        channels = (
            ", ".join(f"<#{c}> {rule}" for c, rule in s.channel_rules.items()) or "all allowed"
        )
        budget = f"${s.monthly_budget_usd:,.2f}" if s.monthly_budget_usd else "no cap"
        managers = ", ".join(f"<@&{r}>" for r in s.manager_roles) or "Manage Server only"
        lines = [
            f"Quota: {s.default_quota} images per {s.window_hours} h · role overrides: {roles}",
            f"Member overrides: {users}",
            f"Exempt roles: {', '.join(f'<@&{r}>' for r in s.exempt_roles) or 'none'}",
            f"Jobs in flight per member: {s.max_in_flight}",
            f"Monthly budget: {budget}",
            f"Reruns: {s.rerun_policy} · NSFW: {s.nsfw_policy}",
            f"Caps: {s.max_images_per_job} images per job, {s.max_steps} steps",
            f"Channels: {channels}",
            f"Bot managers: {managers}",
        ]
        await reply(interaction, "\n".join(lines))

    @settings.command(name="rerun", description="Who may rerun a result (🔁 and buttons)")
    async def settings_rerun(
        self, interaction: discord.Interaction, who: Literal["anyone", "requester"]
    ) -> None:
        await self.bot.jobs.policy.set_rerun_policy(requester_from(interaction), who)
        await reply(interaction, f"Reruns: {who}.")

    @settings.command(name="nsfw", description="What happens to images the safety checker flags")
    @app_commands.choices(
        policy=[
            app_commands.Choice(name="block", value="block"),
            app_commands.Choice(name="spoiler", value="spoiler"),
            app_commands.Choice(name="allow-in-nsfw-channels", value="allow_in_nsfw_channels"),
        ]
    )
    async def settings_nsfw(self, interaction: discord.Interaction, policy: str) -> None:
        await self.bot.jobs.policy.set_nsfw_policy(requester_from(interaction), policy)
        await reply(interaction, f"NSFW policy: {policy.replace('_', '-')}.")

    @settings.command(name="channel", description="Allow or deny edits in a channel")
    @app_commands.describe(rule="allow: edits only in allowed channels; deny: never here; clear")
    async def settings_channel(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel,
        rule: Literal["allow", "deny", "clear"],
    ) -> None:
        await self.bot.jobs.policy.set_channel_rule(requester_from(interaction), channel.id, rule)
        await reply(interaction, f"{channel.mention}: {rule}.")

    @settings.command(name="caps", description="Per-job caps on images and steps")
    async def settings_caps(
        self,
        interaction: discord.Interaction,
        max_images: app_commands.Range[int, 1, 4] | None = None,
        max_steps: app_commands.Range[int, 4, 50] | None = None,
        max_in_flight: app_commands.Range[int, 1, 50] | None = None,
    ) -> None:
        settings = await self.bot.jobs.policy.set_caps(
            requester_from(interaction),
            max_images=max_images,
            max_steps=max_steps,
            max_in_flight=max_in_flight,
        )
        await reply(
            interaction,
            f"Caps: {settings.max_images_per_job} images per job, {settings.max_steps} steps, "
            f"{settings.max_in_flight} jobs in flight per member.",
        )

    @settings.command(name="managers", description="Name or unname a role as bot managers")
    async def settings_managers(
        self,
        interaction: discord.Interaction,
        action: Literal["add", "remove"],
        role: discord.Role,
    ) -> None:
        await self.bot.jobs.policy.set_manager(requester_from(interaction), action, role.id)
        word = "can now use" if action == "add" else "can no longer use"
        text = f"{role.mention} {word} `/admin`."
        if action == "add":
            text += (
                " Members with it still need to see the command: Server Settings → "
                "Integrations → this bot → `/admin`, add the role."
            )
        await reply(interaction, text)

    @settings.command(name="alerts", description="Budget alerts: the channel they go to, or off")
    @app_commands.describe(
        channel="Post here at 50 %, 80 % and 100 % of the budget, and if fal locks the account",
        off="Turn budget alerts off",
    )
    async def settings_alerts(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel | None = None,
        off: bool = False,
    ) -> None:
        who = requester_from(interaction)
        alerts = self.bot.jobs.alerts
        if off:
            await alerts.set_channel(who, None)
            await reply(interaction, "Budget alerts are off.")
            return
        if channel is None:
            current = (await alerts.channel(who)).alerts_channel_id
            text = (
                f"Budget alerts go to <#{current}>. Turn them off with "
                "`/admin settings alerts off:True`."
                if current is not None
                else "Budget alerts are off. Turn them on with `/admin settings alerts "
                "channel:#channel`."
            )
            await reply(interaction, text)
            return
        settings = await alerts.set_channel(who, channel.id, granted_in(channel, channel.guild.me))
        text = (
            f"Budget alerts go to {channel.mention}: one message when this month's spend passes "
            "50 %, 80 % and 100 % of the budget, and one if fal locks the bot's account. "
            "Turn them off with `/admin settings alerts off:True`."
        )
        if not settings.monthly_budget_usd:
            text += " There is no budget yet: set one with `/admin budget set`."
        await reply(interaction, text)

    # ------------------------------------------------------------------ setup

    @app_commands.command(name="setup", description="What is configured and what is missing")
    async def setup_check(self, interaction: discord.Interaction) -> None:
        who = requester_from(interaction)
        checks = self.bot.jobs.setup
        facts = [
            self._channel_facts(interaction, channel_id)
            for channel_id in await checks.channels_to_check(who)
        ]
        await reply(interaction, checklist_text(await checks.checklist(who, facts)))

    @staticmethod
    def _channel_facts(interaction: discord.Interaction, channel_id: int) -> ChannelFacts:
        """The bot's permissions in a channel, as Discord knows them."""
        if channel_id == interaction.channel_id:  # Discord computed them for this interaction
            return ChannelFacts(channel_id, granted_from(interaction.app_permissions))
        guild = interaction.guild
        channel = guild.get_channel(channel_id) if guild is not None else None
        if guild is None or channel is None:
            return ChannelFacts(channel_id, None)
        return ChannelFacts(channel_id, granted_in(channel, guild.me))

    # ------------------------------------------------------------------ reports

    @app_commands.command(name="usage", description="Images and USD per member (CSV attached)")
    async def usage(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self.bot.jobs.usage.report(requester_from(interaction))
        lines = [
            f"<@{row.user_id}>: {row.images_today} today (${row.usd_today:.2f}), "
            f"{row.images_month} this month (${row.usd_month:.2f})"
            for row in report.rows
        ]
        text = "\n".join(lines[:20]) or "No edits this month."
        if len(lines) > 20:
            text += f"\n…and {len(lines) - 20} more in the CSV."
        stamp = datetime.now(UTC).strftime("%Y-%m")
        file = discord.File(io.BytesIO(report.csv), filename=f"usage-{stamp}.csv")
        await reply(interaction, text, file=file)
        await self._spend_chart(interaction)

    async def _spend_chart(self, interaction: discord.Interaction) -> None:
        """The month at a glance, as a second private message: the chart and its projection."""
        chart = await self.bot.jobs.spend.chart(requester_from(interaction))
        names = await _member_names(interaction.guild, [uid for uid, _ in chart.top_members])
        png = await asyncio.to_thread(render_spend_chart, chart, names)  # CPU: off the loop
        projection = chart.projection
        cap = f" of ${projection.budget_usd:,.2f}" if projection.budget_usd > 0 else ""
        text = (
            f"{chart.month:%B %Y}: ${projection.spent_usd:,.2f}{cap} spent. {projection.sentence()}"
        )
        stamp = f"{chart.month:%Y-%m}"
        await reply(interaction, text, file=discord.File(io.BytesIO(png), f"spend-{stamp}.png"))

    @app_commands.command(name="jobs", description="Every running or stuck job, with Cancel")
    async def jobs(self, interaction: discord.Interaction) -> None:
        active = await self.bot.jobs.usage.running(requester_from(interaction))
        if not active:
            await reply(interaction, "No edits are running.")
            return
        shown = active[:JOBS_SHOWN]
        lines: list[str] = []
        for job in shown:
            line = (
                f"#{job.id} · <@{job.user_id}> · {job.state.value} since "
                f"{timestamp(job.updated_at)} in <#{job.channel_id}>"
            )
            # Whole lines only, with room for the note below: a cut line hides a job.
            if sum(len(x) + 1 for x in lines) + len(line) > MESSAGE_MAX - 100:
                break
            lines.append(line)
        listed = shown[: len(lines)]
        if len(listed) < len(active):
            lines.append(
                f"…and {len(active) - len(listed)} more, oldest first. Cancel some, then run "
                "`/admin jobs` again."
            )
        # A completed job is being posted; there is nothing left to cancel at fal.
        view = cancel_list_view([job.id for job in listed if cancellable(job)])
        await reply(interaction, "\n".join(lines), view=view)


async def _member_names(guild: discord.Guild | None, user_ids: list[int]) -> dict[int, str]:
    """Display names for the chart; the bot caches few members, so the rest are fetched."""
    names: dict[int, str] = {}
    if guild is None:
        return names
    for user_id in user_ids:
        member = guild.get_member(user_id)
        if member is None:
            try:
                member = await guild.fetch_member(user_id)
            except discord.HTTPException:
                continue  # left the server: the chart says "member <id>"
        names[user_id] = member.display_name
    return names


async def setup(bot: FluxBot) -> None:
    bot.add_dynamic_items(ProposalButton, PairsPageButton)
    await bot.add_cog(Admin(bot))
