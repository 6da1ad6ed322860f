"""What members read: status lines, the recipe embed, the domain's words with their times and
channels as Discord markup, within Discord's limits (docs/discord-limits.md)."""

from __future__ import annotations

import re
from datetime import datetime

import discord

from jobs.publisher import Delivery, StatusUpdate
from jobs.records import AnyJob, EditJob
from jobs.request import MATCH_INPUT, EditRequest
from jobs.text import ChannelRef, RoleRef, TimeStyle, When, Words, plural
from jobs.training import TrainingRequest

MESSAGE_MAX = 2000
EMBED_DESCRIPTION_MAX = 4096
PROMPT_SHOWN_MAX = 1000
FIELD_MAX = 1024
RERUN_EMOJI = "🔁"

SHOWN_MAX = 20
_UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff`]")

_PHASE_TEXT = {
    "admitted": "⏳ Accepted, sending to fal…",
    "waiting": "⏸️ Waiting for a free slot",
    "queued": "🕒 Waiting in fal's queue",
    "running": "🎨 Editing",
    "delivering": "📤 Posting the result…",
    "delivered": "✅ Done",
    "failed": "❌ Failed",
    "cancelled": "🚫 Cancelled",
    "expired": "⌛ Timed out",
}


_TRAINING_PHASE_TEXT = {
    **_PHASE_TEXT,
    "running": "🏋️ Training",
    "delivering": "📥 Registering the LoRA…",
    "delivered": "✅ Trained",
}


def timestamp(moment: datetime, style: TimeStyle = "R") -> str:
    """Discord renders <t:…> in each reader's own time zone and language."""
    return f"<t:{int(moment.timestamp())}:{style}>"


def markup(parts: Words) -> str:
    """The domain's words with their moments and channels as Discord shows them."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, When):
            out.append(timestamp(part.moment, part.style))
        elif isinstance(part, ChannelRef):
            out.append(f"<#{part.id}>")
        elif isinstance(part, RoleRef):
            out.append(f"<@&{part.id}>")  # shown as the role; replies never ping it
        else:
            out.append(part)
    return "".join(out)


def message_link(guild_id: int, channel_id: int, message_id: int) -> str:
    return discord.MessageReference(
        message_id=message_id, channel_id=channel_id, guild_id=guild_id
    ).jump_url


def shown(value: object) -> str:
    """A value echoed back safely: no invisible or direction characters, no backticks, short."""
    text = _UNSHOWABLE.sub("", str(value))
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 1] + "…"


def quote_prompt(prompt: str, limit: int = PROMPT_SHOWN_MAX) -> str:
    """Escape markdown so a prompt can't break the layout; cut long ones visibly."""
    text = discord.utils.escape_markdown(prompt)
    text = discord.utils.escape_mentions(text)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def lora_lines(request: EditRequest) -> str:
    if not request.loras:
        return "none"
    return "\n".join(f"`{lora.name}` × {lora.scale:g}" for lora in request.loras)[:FIELD_MAX]


def size_text(request: EditRequest) -> str:
    if request.size == MATCH_INPUT:
        label = "matches image 1"
    elif request.size == "custom":
        label = "custom"
    else:
        label = request.size.replace("_", " ")
    return f"{request.width}×{request.height} ({label})"


def waiting_place(position: int, of: int | None) -> str:
    """A job's place in the bot's fair queue: 1 is the next to go to fal."""
    return f"position {position:,} of {max(position, of or position):,}"


def status_text(job: AnyJob, update: StatusUpdate) -> str:
    request = update.request
    if isinstance(request, TrainingRequest):
        return training_status_text(job, update, request)
    head = f"**Edit #{job.id}** for <@{job.user_id}> · {_PHASE_TEXT[update.phase]}"
    parts = [head]
    if update.phase == "queued" and update.queue_position is not None:
        ahead = update.queue_position
        parts.append("next in line" if ahead == 0 else f"{ahead} ahead")
    if update.phase == "waiting" and update.queue_position is not None:
        parts[0] += f": {waiting_place(update.queue_position, update.queue_size)}"
    if update.phase in ("admitted", "waiting", "queued", "running", "delivering"):
        parts.append(f"started {timestamp(update.started_at)}")
        if update.eta_at is not None:
            parts.append(f"ETA {timestamp(update.eta_at)}")
    lines = [" · ".join(parts)]
    if update.note:
        lines.append(update.note)
    loras = ", ".join(f"{lora.name} × {lora.scale:g}" for lora in request.loras) or "no LoRA"
    count = f"{request.count} image{'s' if request.count != 1 else ''}"
    lines.append(f"> {quote_prompt(request.prompt, 300)}")
    lines.append(f"-# {loras} · {size_text(request)} · {count} · seed {request.seed}")
    return "\n".join(lines)[:MESSAGE_MAX]


def training_status_text(job: AnyJob, update: StatusUpdate, request: TrainingRequest) -> str:
    """A training's status: its LoRA's name, progress (step x of y), elapsed, ETA."""
    head = (
        f"**Training #{job.id}** `{shown(request.name)}` for <@{job.user_id}> · "
        f"{_TRAINING_PHASE_TEXT[update.phase]}"
    )
    parts = [head]
    if update.phase == "queued" and update.queue_position is not None:
        ahead = update.queue_position
        parts.append("next in line" if ahead == 0 else f"{ahead} ahead")
    if update.phase == "running" and update.progress is not None:
        done, total = update.progress
        parts.append(f"step {done:,} of {total:,} ({done * 100 // max(1, total)} %)")
    if update.phase == "waiting" and update.queue_position is not None:
        parts[0] += f": {waiting_place(update.queue_position, update.queue_size)}"
    if update.phase in ("admitted", "waiting", "queued", "running", "delivering"):
        parts.append(f"started {timestamp(update.started_at)}")
        if update.eta_at is not None:
            parts.append(f"ETA {timestamp(update.eta_at)}")
    lines = [" · ".join(parts)]
    if update.note:
        lines.append(update.note)
    lines.append(
        f"-# {plural(request.pairs, 'pair')} · {request.steps:,} steps · learning rate "
        f"{request.learning_rate:g} · estimate ${request.estimate_usd:.2f} (server budget)"
    )
    return "\n".join(lines)[:MESSAGE_MAX]


def recipe_embed(job: EditJob, delivery: Delivery, guild_id: int) -> discord.Embed:
    request = delivery.request
    embed = discord.Embed(
        title=f"Edit #{job.id}",
        description=quote_prompt(request.prompt),
        colour=discord.Colour.blurple(),
    )
    embed.add_field(name="LoRAs", value=lora_lines(request), inline=False)
    if request.preset:
        embed.add_field(name="Preset", value=f"`{request.preset}`", inline=False)
    embed.add_field(name="Seed", value=str(delivery.seed))
    embed.add_field(name="Guidance", value=f"{request.guidance:g}")
    embed.add_field(name="Steps", value=str(request.steps))
    embed.add_field(name="Size", value=size_text(request))
    embed.add_field(name="Time", value=f"{delivery.seconds:.1f} s")
    embed.add_field(name="Cost", value=f"${delivery.cost_usd:.3f}")
    if request.final_prompt != request.prompt:
        embed.add_field(
            name="Prompt sent", value=quote_prompt(request.final_prompt, FIELD_MAX), inline=False
        )
    if delivery.parent_result is not None:
        channel_id, message_id = delivery.parent_result
        link = message_link(guild_id, channel_id, message_id)
        embed.add_field(name="Made from", value=f"[#{job.parent_job_id}]({link})")
    notes = list(delivery.notes)
    if delivery.blocked:
        notes.append(f"{plural(delivery.blocked, 'image')} hidden by the safety checker")
    if delivery.reencoded:
        notes.append("re-encoded to fit the upload limit")
    footer = f"{RERUN_EMOJI} react to rerun with a new seed"
    if notes:
        footer = " · ".join(notes) + " · " + footer
    embed.set_footer(text=footer[:2048])
    return embed


def follow_link(job: AnyJob) -> str:
    """Where the member can watch a new job."""
    if job.status_message_id is None:
        return ""
    link = message_link(job.guild_id, job.channel_id, job.status_message_id)
    return f" Follow it [here]({link})."


def started_text(job: EditJob, note: str = "") -> str:
    """The private answer to /edit and the message menu once the edit is admitted."""
    return (
        f"Edit #{job.id} is on its way: {plural(job.request.count, 'image')}, about "
        f"${job.cost_usd:.3f}.{follow_link(job)} {note}".strip()
    )
