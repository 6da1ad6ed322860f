"""Working from a result: rerun (🔁 or the button), tweak, use as input, delete. Who may do
what follows the server's rerun policy; other servers' results do not exist here."""

from __future__ import annotations

import logging
from datetime import timedelta

from jobs.admission import Admission
from jobs.context import JobContext
from jobs.errors import NotAllowed, NotFound
from jobs.policy import Requester, is_manager
from jobs.records import EditJob, is_edit
from jobs.registry import Registry
from jobs.request import EditOptions, InputRef, RecipeLora

log = logging.getLogger(__name__)


def _reaction_key(message_id: int, user_id: int) -> str:
    return f"reaction:{message_id}:{user_id}"


class Reruns:
    def __init__(self, ctx: JobContext, admission: Admission, registry: Registry) -> None:
        self._ctx = ctx
        self._admission = admission
        self._registry = registry

    async def result_job(self, who: Requester, job_id: int) -> EditJob:
        """A job of this server, or NotFound (other servers' jobs are invisible)."""
        job = await self._ctx.storage.jobs.get(job_id)
        if job is None or job.guild_id != who.guild_id or not is_edit(job):
            raise NotFound("That edit doesn't exist on this server.")
        return job

    async def by_result_message(self, guild_id: int, message_id: int) -> EditJob | None:
        """The job whose result is this message, on this server (for 🔁 reactions)."""
        job = await self._ctx.storage.jobs.by_result_message(message_id)
        if job is None or job.guild_id != guild_id or not is_edit(job):
            return None
        return job

    async def recent_results(self, hours: int) -> list[EditJob]:
        """Results posted in the last `hours`: where 🔁 reactions may wait unseen after a
        restart."""
        since = self._ctx.now() - timedelta(hours=hours)
        return [job for job in await self._ctx.storage.jobs.delivered_since(since) if is_edit(job)]

    async def note_reaction(self, message_id: int, user_id: int, *, fresh: bool) -> bool:
        """Record that this member's 🔁 on this result is being handled. A live reaction is
        always fresh (Discord only sends an add for a reaction that was not there); one found
        at start counts only if no process recorded it before. True: handle it."""
        key = _reaction_key(message_id, user_id)
        stamp = self._ctx.now().isoformat()
        if fresh:
            await self._ctx.storage.settings.set_meta(key, stamp)
            return True
        return await self._ctx.storage.settings.claim_meta(key, stamp)

    async def forget_reaction(self, message_id: int, user_id: int) -> None:
        """The reaction was taken back: a new one later is a new request."""
        await self._ctx.storage.settings.take_meta(_reaction_key(message_id, user_id))

    async def check_rerun(self, who: Requester, job_id: int) -> EditJob:
        """The job to rerun if the server's rerun policy lets `who` rerun it, else NotAllowed."""
        parent = await self.result_job(who, job_id)
        settings = await self._ctx.storage.settings.effective(who.guild_id, who.rules_channel_id)
        if (
            settings.rerun_policy == "requester"
            and parent.user_id != who.user_id
            and not is_manager(settings.guild, who)
        ):
            raise NotAllowed("On this server only the member who made an edit can rerun it.")
        return parent

    async def check_before_form(self, who: Requester, job_id: int) -> EditJob:
        """Refuse at the click, not after the member has filled in a form (Tweak, Use as
        input): the rerun policy, the channel and the member's quota."""
        job = await self.check_rerun(who, job_id)
        await self._admission.check_allowed(who)
        return job

    async def check_delete(self, who: Requester, job_id: int) -> EditJob:
        job = await self.result_job(who, job_id)
        if job.user_id != who.user_id and not who.can_manage_messages:
            raise NotAllowed("Only the member who made this edit (or a moderator) can delete it.")
        return job

    async def rerun(
        self,
        job_id: int,
        who: Requester,
        *,
        seed: int | None = None,
        prompt: str | None = None,
        scales: dict[str, float] | None = None,
        first_input: InputRef | None = None,
    ) -> EditJob:
        """A new job from a result's recipe: new seed unless given; the rerunner is charged."""
        parent = await self.check_rerun(who, job_id)
        options, inputs, resolved = await self.recipe_of(
            who,
            parent,
            seed=self._ctx.new_seed() if seed is None else seed,
            prompt=prompt,
            scales=scales,
            first_input=first_input,
        )
        request = await self._admission.build(who, options, inputs, loras=resolved)
        job = await self._admission.admit(who, request, parent_job_id=parent.id)
        log.info("job %s reruns job %s for user %s", job.id, parent.id, who.user_id)
        return job

    async def recipe_of(
        self,
        who: Requester,
        parent: EditJob,
        *,
        seed: int,
        prompt: str | None = None,
        scales: dict[str, float] | None = None,
        first_input: InputRef | None = None,
    ) -> tuple[EditOptions, list[InputRef], list[RecipeLora]]:
        """A result's recipe as options, inputs and LoRAs resolved again (by id: a renamed LoRA
        is still the recipe's; a removed, disabled or NSFW one is refused as in /edit)."""
        old = parent.request
        loras: list[RecipeLora] = []
        for lora in old.loras:
            current = await self._registry.current(who, lora)
            scale = (scales or {}).get(lora.name, lora.scale)
            loras.append(lora.model_copy(update={"scale": scale, "name": current.name}))
        resolved = await self._registry.resolve(who, [(lora.name, lora.scale) for lora in loras])
        inputs = list(old.inputs)
        if first_input is not None:
            inputs = [first_input, *inputs[1:]]
        options = EditOptions(
            prompt=old.prompt if prompt is None else prompt,
            seed=seed,
            guidance=old.guidance,
            steps=old.steps,
            size=old.size if old.size != "custom" else None,
            width=old.width if old.size == "custom" else None,
            height=old.height if old.size == "custom" else None,
            count=old.count,
            acceleration=old.acceleration,
            expand_prompt=old.expand_prompt,
            output_format=old.output_format,
        )
        return options, inputs, resolved
