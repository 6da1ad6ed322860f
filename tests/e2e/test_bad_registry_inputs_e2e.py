"""Bad input to the LoRA registry (`/admin lora add|edit|disable|enable|remove`) answered
with its own message, privately, and the registry is unchanged: names with invisible
characters, SQL or too many characters, a name already taken, LoRA URLs with credentials,
local paths, non-https schemes, private, loopback, link-local or carrier-grade NAT addresses
however they are spelled, scales and flags out of range, bad trigger words and descriptions.
The checks every row gets are in tests/harness/bad_inputs.py."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

from tests.harness.bad_inputs import (
    BAD_NAME,
    INVISIBLE_NAME,
    Desk,
    Row,
    admin,
    check_row,
    check_table,
    open_desk,
    row_id,
)
from tests.harness.e2e import World


def add(name: str = "newlora", path: str = "owner/new", **more: Any) -> dict[str, Any]:
    return {"name": name, "path": path, **more}


PRIVATE = "points at a private or local address"

ROWS: list[Row] = [
    Row(
        "admin lora add: zero-width name",
        "carol",
        admin("lora add", add("cl\u200bay2")),
        INVISIBLE_NAME,
    ),
    Row(
        "admin lora add: right-to-left name",
        "carol",
        admin("lora add", add("\u202eyalc")),
        INVISIBLE_NAME,
    ),
    Row(
        "admin lora add: SQL in the name",
        "carol",
        admin("lora add", add("x');DROP TABLE loras;--")),
        BAD_NAME,
    ),
    Row("admin lora add: 33-character name", "carol", admin("lora add", add("n" * 33)), BAD_NAME),
    Row(
        "admin lora add: name taken (case-insensitive)",
        "carol",
        admin("lora add", add("CLAY")),
        "A LoRA named `clay` already exists here",
    ),
    Row(
        "admin lora add: URL with credentials",
        "carol",
        admin("lora add", add(path="https://user:hunter2@example.com/a.safetensors")),
        "The LoRA URL contains credentials",
    ),
    Row(
        "admin lora add: file: URL",
        "carol",
        admin("lora add", add(path="file:///etc/passwd")),
        "`file:` URLs aren't allowed",
    ),
    Row(
        "admin lora add: http URL",
        "carol",
        admin("lora add", add(path="http://example.com/a.safetensors")),
        "`http:` URLs aren't allowed",
    ),
    Row(
        "admin lora add: private IP",
        "carol",
        admin("lora add", add(path="https://10.0.0.7/a.safetensors")),
        PRIVATE,
    ),
    Row(
        "admin lora add: cloud metadata IP",
        "carol",
        admin("lora add", add(path="https://169.254.169.254/a.safetensors")),
        PRIVATE,
    ),
    Row(
        "admin lora add: loopback IPv6",
        "carol",
        admin("lora add", add(path="https://[::1]/a.safetensors")),
        PRIVATE,
    ),
    Row(
        "admin lora add: localhost",
        "carol",
        admin("lora add", add(path="https://localhost/a.safetensors")),
        PRIVATE,
    ),
    Row(
        "admin lora add: decimal IP spelling",
        "carol",
        admin("lora add", add(path="https://2130706433/a.safetensors")),
        PRIVATE,
    ),
    Row(
        "admin lora add: loopback in circled digits (①②⑦.0.0.1)",
        "carol",
        admin("lora add", add(path="https://①②⑦.0.0.1/a.safetensors")),
        PRIVATE + " (127.0.0.1)",
    ),
    Row(
        "admin lora add: carrier-grade NAT address",
        "carol",
        admin("lora add", add(path="https://100.64.0.1/a.safetensors")),
        PRIVATE,
    ),
    Row(
        "admin lora add: local path",
        "carol",
        admin("lora add", add(path="../../etc/passwd")),
        "Local file paths aren't allowed",
    ),
    Row(
        "admin lora add: not a .safetensors URL",
        "carol",
        admin("lora add", add(path="https://example.com/a.exe")),
        "must point at a `.safetensors` file",
    ),
    Row(
        "admin lora add: scale 9 (raw)",
        "carol",
        admin("lora add", add(scale=9.0), raw=True),
        "`scale` must be between 0 and 4; you gave 9.",
    ),
    Row(
        "admin lora add: scale is text (raw)",
        "carol",
        admin("lora add", add(scale="big"), raw=True),
        "`scale` must be a number; you gave `big`.",
    ),
    Row(
        "admin lora add: nsfw is text (raw)",
        "carol",
        admin("lora add", add(nsfw="maybe"), raw=True),
        "`nsfw` must be true or false; you gave `maybe`.",
    ),
    Row(
        "admin lora add: zero-width trigger word",
        "carol",
        admin("lora add", add(triggers="clay\u200b")),
        "Trigger words can't contain invisible characters.",
    ),
    Row(
        "admin lora add: 301-character description",
        "carol",
        admin("lora add", add(description="d" * 301)),
        "The description is 301 characters; the limit is 300.",
    ),
    Row(
        "admin lora add: right-to-left override in the description",
        "carol",
        admin("lora add", add(description="nice \u202eecin")),
        "Descriptions can't contain direction-changing characters",
    ),
    Row(
        "admin lora edit: nothing to change",
        "carol",
        admin("lora edit", {"name": "clay"}),
        "Nothing to change",
    ),
    Row(
        "admin lora edit: unknown LoRA",
        "carol",
        admin("lora edit", {"name": "nope", "scale": 1.0}),
        "This server has no LoRA named `nope`.",
    ),
    Row(
        "admin lora edit: right-to-left new name",
        "carol",
        admin("lora edit", {"name": "clay", "new_name": "\u202eyalc"}),
        INVISIBLE_NAME,
    ),
    Row(
        "admin lora edit: private IP path",
        "carol",
        admin("lora edit", {"name": "clay", "path": "https://192.168.1.1/a.safetensors"}),
        PRIVATE,
    ),
    Row(
        "admin lora disable: zero-width name",
        "carol",
        admin("lora disable", {"name": "cl\u200bay"}),
        INVISIBLE_NAME,
    ),
    Row(
        "admin lora enable: unknown LoRA",
        "carol",
        admin("lora enable", {"name": "nope"}),
        "This server has no LoRA named `nope`.",
    ),
    Row(
        "admin lora remove: right-to-left name",
        "carol",
        admin("lora remove", {"name": "\u202eyalc"}),
        INVISIBLE_NAME,
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(module_world: World) -> Desk:
    """One bot for the whole table; see tests/harness/bad_inputs.py."""
    return await open_desk(module_world)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", ROWS, ids=row_id)
async def test_bad_registry_input(desk: Desk, row: Row, request: pytest.FixtureRequest) -> None:
    await check_row(desk, row, request.node)


def test_the_table_keeps_every_row() -> None:
    check_table(ROWS, at_least=30)
