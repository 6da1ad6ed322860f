"""`/admin`: the registry, quotas, budget and policy. Only managers get past interaction_check."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from cogs.common import MEMBER_FACING, is_bot_manager, member_text, reply
from cogs.loras import ConfirmRemove, admin_lora_autocomplete, lora_card
from cogs.views import CancelButton
from jobs.errors import BadRequest
from jobs.loras import check_description, check_name, check_path, check_scale, parse_triggers
from jobs.refusals import discord_time
from storage.models import GuildSettings, JobState

if TYPE_CHECKING:
    from bot import FluxBot

JOBS_SHOWN = 25  # Discord allows 25 buttons on a message

NOT_MANAGER = (
    "Only members with Manage Server or a bot-manager role can use `/admin`. "
    "If your server shows `/admin` to your role (Server Settings → Integrations), an admin "
    "must also name that role a bot manager with `/admin settings managers add`."
)

ONLY_OWNERS_NAME_MANAGERS = (
    "Only members with Manage Server can name or unname bot-manager roles; bot managers "
    "can use every other `/admin` command."
)

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

    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # Discord's default_permissions can be overridden per role by the server; check again.
        # Raising (not replying here) lets the error handler give the one and only answer: a
        # False return would make discord.py raise its own CheckFailure and answer a second time.
        if await is_bot_manager(interaction):
            return True
        raise NotManager(NOT_MANAGER)

    async def _settings(self, interaction: discord.Interaction) -> GuildSettings:
        assert interaction.guild_id is not None
        return await self.bot.storage.settings.get(interaction.guild_id)

    async def _change(
        self, interaction: discord.Interaction, change: Callable[[GuildSettings], GuildSettings]
    ) -> GuildSettings:
        """Read, change and save in one transaction: two admins at once never undo each other."""
        assert interaction.guild_id is not None
        return await self.bot.storage.settings.update(interaction.guild_id, change)

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
        assert interaction.guild_id is not None
        try:
            lora = await self.bot.storage.loras.add(
                interaction.guild_id,
                check_name(name),
                check_path(path),
                default_scale=check_scale(scale),
                trigger_words=parse_triggers(triggers),
                description=check_description(description),
                nsfw=nsfw,
                actor_id=interaction.user.id,
                max_per_guild=self.bot.settings.max_loras_per_server,
            )
        except MEMBER_FACING as error:
            await reply(interaction, member_text(error))
            return
        await interaction.response.send_message(
            f"Added `{lora.name}`. Members can use it in `/edit` now.",
            embed=lora_card(lora),
            ephemeral=True,
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
        assert interaction.guild_id is not None
        try:
            changes: dict[str, Any] = {}
            if new_name is not None:
                changes["name"] = check_name(new_name)
            if path is not None:
                changes["path"] = check_path(path)
            if scale is not None:
                changes["default_scale"] = check_scale(scale)
            if triggers is not None:
                changes["trigger_words"] = (
                    [] if triggers.strip() == "-" else parse_triggers(triggers)
                )
            if description is not None:
                changes["description"] = (
                    "" if description.strip() == "-" else check_description(description)
                )
            if nsfw is not None:
                changes["nsfw"] = nsfw
            if not changes:
                raise BadRequest("Nothing to change: give at least one option besides the name.")
            before = await self.bot.storage.loras.get(interaction.guild_id, name.strip())
            lora = await self.bot.storage.loras.update(
                interaction.guild_id, check_name(name), interaction.user.id, **changes
            )
        except MEMBER_FACING as error:
            await reply(interaction, member_text(error))
            return
        if before is not None and before.version == lora.version:
            text = f"Nothing changed: `{lora.name}` already has those settings."
        else:
            text = f"Updated `{lora.name}` (version {lora.version})."
        await interaction.response.send_message(text, embed=lora_card(lora), ephemeral=True)

    async def _set_enabled(
        self, interaction: discord.Interaction, name: str, enabled: bool
    ) -> None:
        assert interaction.guild_id is not None
        try:
            lora = await self.bot.storage.loras.set_enabled(
                interaction.guild_id, check_name(name), enabled, actor_id=interaction.user.id
            )
        except MEMBER_FACING as error:
            await reply(interaction, member_text(error))
            return
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
        assert interaction.guild_id is not None
        try:
            name = check_name(name)
        except BadRequest as error:
            await reply(interaction, str(error))
            return
        lora = await self.bot.storage.loras.get(interaction.guild_id, name)
        if lora is None:
            await reply(interaction, f"This server has no LoRA named `{name}`.")
            return
        view = ConfirmRemove(self.bot, lora, interaction.user.id)
        await interaction.response.send_message(
            f"Remove `{lora.name}` for good? Past results keep their recipe; reruns of them "
            "will be refused.",
            view=view,
            ephemeral=True,
        )
        view.interaction = interaction

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
        update: dict[str, Any] = {"default_quota": images}
        if window_hours is not None:
            update["window_hours"] = window_hours
        settings = await self._change(interaction, lambda s: s.model_copy(update=update))
        await reply(
            interaction,
            f"Members may now make {images} images per {settings.window_hours} h "
            "(role and member overrides still apply).",
        )

    async def _set_override(
        self,
        interaction: discord.Interaction,
        field: Literal["role_quotas", "user_quotas"],
        target_id: int,
        images: int,
    ) -> GuildSettings:
        """Set (or with a negative count, remove) one role's or member's quota override."""

        def change(settings: GuildSettings) -> GuildSettings:
            quotas = dict(getattr(settings, field))
            if images < 0:
                quotas.pop(target_id, None)
            else:
                quotas[target_id] = images
            return settings.model_copy(update={field: quotas})

        return await self._change(interaction, change)

    @quota.command(name="role", description="A quota for members with this role")
    @app_commands.describe(images="Images per window; the highest matching role wins (-1 removes)")
    async def quota_role(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        images: app_commands.Range[int, -1, 10_000],
    ) -> None:
        settings = await self._set_override(interaction, "role_quotas", role.id, images)
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
        settings = await self._set_override(interaction, "user_quotas", member.id, images)
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
        def change(settings: GuildSettings) -> GuildSettings:
            exempt = [r for r in settings.exempt_roles if r != role.id]
            if not remove:
                exempt.append(role.id)
            return settings.model_copy(update={"exempt_roles": exempt})

        await self._change(interaction, change)
        word = "no longer exempt" if remove else "exempt from quotas (the budget still applies)"
        await reply(interaction, f"{role.mention} is {word}.")

    @quota.command(name="reset", description="Forgive a member's usage in the current window")
    async def quota_reset(self, interaction: discord.Interaction, member: discord.Member) -> None:
        assert interaction.guild_id is not None
        await self.bot.storage.quotas.reset(interaction.guild_id, member.id)
        await reply(interaction, f"{member.mention}'s quota window starts fresh.")

    # ------------------------------------------------------------------ budget

    @budget.command(name="set", description="Monthly USD cap for the whole server (0 = no cap)")
    async def budget_set(
        self, interaction: discord.Interaction, usd: app_commands.Range[float, 0.0, 1_000_000.0]
    ) -> None:
        await self._change(interaction, lambda s: s.model_copy(update={"monthly_budget_usd": usd}))
        text = "No monthly cap." if usd == 0 else f"Monthly budget set to ${usd:,.2f}."
        await reply(interaction, text)

    @budget.command(name="show", description="Spend this month against the budget")
    async def budget_show(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        settings = await self._settings(interaction)
        spent = await self.bot.storage.quotas.guild_spend(interaction.guild_id)
        cap = settings.monthly_budget_usd
        text = f"Spent this month: ${spent:,.2f}"
        text += f" of ${cap:,.2f}." if cap else " (no cap)."
        await reply(interaction, text)

    # ------------------------------------------------------------------ settings

    @settings.command(name="show", description="Every policy setting of this server")
    async def settings_show(self, interaction: discord.Interaction) -> None:
        s = await self._settings(interaction)
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
        await reply(interaction, "\n".join(lines)[:2000])

    @settings.command(name="rerun", description="Who may rerun a result (🔁 and buttons)")
    async def settings_rerun(
        self, interaction: discord.Interaction, who: Literal["anyone", "requester"]
    ) -> None:
        await self._change(interaction, lambda s: s.model_copy(update={"rerun_policy": who}))
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
        await self._change(interaction, lambda s: s.model_copy(update={"nsfw_policy": policy}))
        await reply(interaction, f"NSFW policy: {policy.replace('_', '-')}.")

    @settings.command(name="channel", description="Allow or deny edits in a channel")
    @app_commands.describe(rule="allow: edits only in allowed channels; deny: never here; clear")
    async def settings_channel(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel,
        rule: Literal["allow", "deny", "clear"],
    ) -> None:
        def change(settings: GuildSettings) -> GuildSettings:
            rules = dict(settings.channel_rules)
            if rule == "clear":
                rules.pop(channel.id, None)
            else:
                rules[channel.id] = rule
            return settings.model_copy(update={"channel_rules": rules})

        await self._change(interaction, change)
        await reply(interaction, f"{channel.mention}: {rule}.")

    @settings.command(name="caps", description="Per-job caps on images and steps")
    async def settings_caps(
        self,
        interaction: discord.Interaction,
        max_images: app_commands.Range[int, 1, 4] | None = None,
        max_steps: app_commands.Range[int, 4, 50] | None = None,
        max_in_flight: app_commands.Range[int, 1, 50] | None = None,
    ) -> None:
        update = {
            k: v
            for k, v in (
                ("max_images_per_job", max_images),
                ("max_steps", max_steps),
                ("max_in_flight", max_in_flight),
            )
            if v is not None
        }
        settings = await self._change(interaction, lambda s: s.model_copy(update=update))
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
        assert interaction.guild_id is not None
        # A delegated manager must not be able to hand the keys to further roles.
        if not interaction.permissions.manage_guild:
            await reply(interaction, ONLY_OWNERS_NAME_MANAGERS)
            return
        if role.is_default():
            await reply(
                interaction,
                "@everyone can't be a bot-manager role: every member would manage the bot.",
            )
            return

        def change(settings: GuildSettings) -> GuildSettings:
            roles = [r for r in settings.manager_roles if r != role.id]
            if action == "add":
                roles.append(role.id)
            return settings.model_copy(update={"manager_roles": roles})

        await self._change(interaction, change)
        log.info(
            "guild %d: role %d %s bot managers by %d",
            interaction.guild_id,
            role.id,
            "added to" if action == "add" else "removed from",
            interaction.user.id,
        )
        word = "can now use" if action == "add" else "can no longer use"
        text = f"{role.mention} {word} `/admin`."
        if action == "add":
            text += (
                " Members with it still need to see the command: Server Settings → "
                "Integrations → this bot → `/admin`, add the role."
            )
        await reply(interaction, text)

    # ------------------------------------------------------------------ reports

    @app_commands.command(name="usage", description="Images and USD per member (CSV attached)")
    async def usage(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        rows = await self.bot.storage.quotas.member_report(interaction.guild_id)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["user_id", "images_today", "usd_today", "images_month", "usd_month"])
        lines = []
        for row in rows:
            writer.writerow(
                [
                    row.user_id,
                    row.images_today,
                    f"{row.usd_today:.4f}",
                    row.images_month,
                    f"{row.usd_month:.4f}",
                ]
            )
            lines.append(
                f"<@{row.user_id}>: {row.images_today} today (${row.usd_today:.2f}), "
                f"{row.images_month} this month (${row.usd_month:.2f})"
            )
        text = "\n".join(lines[:20]) or "No edits this month."
        if len(lines) > 20:
            text += f"\n…and {len(lines) - 20} more in the CSV."
        stamp = datetime.now(UTC).strftime("%Y-%m")
        await interaction.followup.send(
            text[:2000],
            file=discord.File(io.BytesIO(out.getvalue().encode()), filename=f"usage-{stamp}.csv"),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @app_commands.command(name="jobs", description="Every running or stuck job, with Cancel")
    async def jobs(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        active = await self.bot.storage.jobs.active(interaction.guild_id)
        if not active:
            await reply(interaction, "No edits are running.")
            return
        shown = active[:JOBS_SHOWN]
        lines: list[str] = []
        for job in shown:
            line = (
                f"#{job.id} · <@{job.user_id}> · {job.state.value} since "
                f"{discord_time(job.updated_at)} in <#{job.channel_id}>"
            )
            # Whole lines only, with room for the note below: a cut line hides a job.
            if sum(len(x) + 1 for x in lines) + len(line) > 2000 - 100:
                break
            lines.append(line)
        listed = shown[: len(lines)]
        if len(listed) < len(active):
            lines.append(
                f"…and {len(active) - len(listed)} more, oldest first. Cancel some, then run "
                "`/admin jobs` again."
            )
        view = discord.ui.View(timeout=None)
        for job in listed:
            # A completed job is being posted; there is nothing left to cancel at fal.
            if job.state != JobState.COMPLETED:
                view.add_item(CancelButton(job.id, label=f"Cancel #{job.id}"))
        await interaction.response.send_message(
            "\n".join(lines),
            view=view if view.children else discord.utils.MISSING,
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )


async def setup(bot: FluxBot) -> None:
    await bot.add_cog(Admin(bot))
