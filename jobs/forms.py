"""What a form needs when its submit comes back, kept in the database so a member's typed
changes survive a restart: the images of the message a member opened the edit menu on (their
Discord attachment URLs, which a later read of the message would not return to a bot without
the message-content intent)."""

from __future__ import annotations

import logging

from pydantic import BaseModel

from jobs.errors import NotFound
from jobs.policy import Requester
from storage.settings import SettingsRepository

log = logging.getLogger(__name__)


class DraftImage(BaseModel):
    url: str
    filename: str
    size: int
    content_type: str | None = None


class EditDraft(BaseModel):
    """The message menu's edit, between the click and the submit."""

    guild_id: int
    user_id: int
    message_id: int
    images: list[DraftImage]
    note: str = ""


class FormDrafts:
    def __init__(self, settings: SettingsRepository) -> None:
        self._settings = settings

    async def save_edit(self, key: int, draft: EditDraft) -> None:
        await self._settings.set_meta(f"form:edit:{key}", draft.model_dump_json())

    async def take_edit(self, who: Requester, key: int) -> EditDraft:
        """The draft, once; only the member who opened the form may submit it."""
        raw = await self._settings.take_meta(f"form:edit:{key}")
        draft = None if raw is None else EditDraft.model_validate_json(raw)
        if draft is None or draft.user_id != who.user_id or draft.guild_id != who.guild_id:
            log.info("form draft %s not found for user %s", key, who.user_id)
            raise NotFound("That form has expired. Open the message menu again.")
        return draft
