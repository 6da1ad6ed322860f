"""What the emulator raises at tests and answers to the bot."""

from __future__ import annotations

from typing import Any


class EmulatorError(Exception):
    """A test asked for something a Discord member could not do, or the world has no such thing."""


class EmulatorTimeout(TimeoutError):
    """Waited for something the bot never did; the message says what was seen instead."""


class InteractionFailed(Exception):
    """The member saw "This interaction failed": no acknowledgement in time, or it was refused."""


class DiscordHTTPError(Exception):
    """An error answer in Discord's shape: `{"code", "message", "errors"?}` with an HTTP status."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


# Discord's JSON error codes the emulator answers with.
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_MEMBER = 10007
UNKNOWN_MESSAGE = 10008
UNKNOWN_USER = 10013
UNKNOWN_EMOJI = 10014
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
UNKNOWN_APPLICATION_COMMAND = 10063
MAX_REACTIONS = 30010
UNAUTHORIZED = 40001
REQUEST_TOO_LARGE = 40005
ALREADY_ACKNOWLEDGED = 40060
MISSING_ACCESS = 50001
CANNOT_EDIT_OTHERS_MESSAGE = 50005
EMPTY_MESSAGE = 50006
CANNOT_DM_USER = 50007
MISSING_PERMISSIONS = 50013
INVALID_WEBHOOK_TOKEN = 50027
INVALID_FORM_BODY = 50035


def not_found(code: int, what: str) -> DiscordHTTPError:
    return DiscordHTTPError(404, code, f"Unknown {what}")


def forbidden(code: int = MISSING_PERMISSIONS) -> DiscordHTTPError:
    text = "Missing Access" if code == MISSING_ACCESS else "Missing Permissions"
    return DiscordHTTPError(403, code, text)


def invalid_form(errors: dict[str, Any]) -> DiscordHTTPError:
    return DiscordHTTPError(400, INVALID_FORM_BODY, "Invalid Form Body", errors)


def field_error(path: list[str | int], code: str, message: str) -> dict[str, Any]:
    """Discord's nested `errors` object for one failing field."""
    tree: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path):
        tree = {str(part): tree}
    return tree
