"""What members read: status lines, the recipe embed.

Everything is cut to Discord's limits, which refuse the whole message otherwise: content 2,000
characters, embed description 4,096, field value 1,024, footer 2,048.
"""

from __future__ import annotations

import discord

from jobs.publisher import Delivery, StatusUpdate
from jobs.refusals import discord_time, plural
from jobs.request import MATCH_INPUT, EditRequest
from storage.models import Job

EMBED_DESCRIPTION_MAX = 4096
PROMPT_SHOWN_MAX = 1000
FIELD_MAX = 1024
RERUN_EMOJI = "🔁"

_PHASE_TEXT = {
    "admitted": "⏳ Accepted, sending to fal…",
    "queued": "🕒 Waiting in fal's queue",
    "running": "🎨 Editing",
    "delivering": "📤 Posting the result…",
    "delivered": "✅ Done",
    "failed": "❌ Failed",
    "cancelled": "🚫 Cancelled",
    "expired": "⌛ Timed out",
}


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


def status_text(job: Job, update: StatusUpdate) -> str:
    request = update.request
    head = f"**Edit #{job.id}** for <@{job.user_id}> · {_PHASE_TEXT[update.phase]}"
    parts = [head]
    if update.phase == "queued" and update.queue_position is not None:
        ahead = update.queue_position
        parts.append("next in line" if ahead == 0 else f"{ahead} ahead")
    if update.phase in ("admitted", "queued", "running", "delivering"):
        parts.append(f"started {discord_time(update.started_at)}")
        if update.eta_at is not None:
            parts.append(f"ETA {discord_time(update.eta_at)}")
    lines = [" · ".join(parts)]
    if update.note:
        lines.append(update.note)
    loras = ", ".join(f"{lora.name} × {lora.scale:g}" for lora in request.loras) or "no LoRA"
    count = f"{request.count} image{'s' if request.count != 1 else ''}"
    lines.append(f"> {quote_prompt(request.prompt, 300)}")
    lines.append(f"-# {loras} · {size_text(request)} · {count} · seed {request.seed}")
    return "\n".join(lines)[:2000]


def recipe_embed(job: Job, delivery: Delivery, guild_id: int) -> discord.Embed:
    request = delivery.request
    embed = discord.Embed(
        title=f"Edit #{job.id}",
        description=quote_prompt(request.prompt),
        colour=discord.Colour.blurple(),
    )
    embed.add_field(name="LoRAs", value=lora_lines(request), inline=False)
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
        link = f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"
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
