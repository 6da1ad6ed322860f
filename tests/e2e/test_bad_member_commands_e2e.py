"""Bad input to /loras, /quota and /jobs answered with its own message, privately, and nothing
else changes: LoRA names with invisible characters, SQL or 7,000 characters, an NSFW LoRA's
card outside an age-restricted channel, options the commands don't have, direct messages.
The checks every row gets are in tests/harness/bad_inputs.py."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.harness.bad_inputs import (
    BAD_NAME,
    INVISIBLE_NAME,
    Desk,
    Row,
    check_row,
    check_table,
    open_desk,
    row_id,
)
from tests.harness.e2e import World

ROWS: list[Row] = [
    Row(
        "loras: zero-width character in the name",
        "alice",
        lambda d: d.slash("alice", "loras", {"name": "cl\u200bay"}),
        INVISIBLE_NAME,
    ),
    Row(
        "loras: right-to-left override in the name",
        "alice",
        lambda d: d.slash("alice", "loras", {"name": "\u202eyalc"}),
        INVISIBLE_NAME,
    ),
    Row(
        "loras: SQL metacharacters in the name",
        "alice",
        lambda d: d.slash("alice", "loras", {"name": "' OR 1=1 --"}),
        BAD_NAME,
    ),
    Row(
        "loras: 7,000-character name (raw)",
        "alice",
        lambda d: d.raw("alice", "loras", {"name": "q" * 7000}),
        "`name` is 7,000 characters; the limit is 6,000.",
    ),
    Row(
        "loras: an NSFW LoRA's card outside an age-restricted channel",
        "alice",
        lambda d: d.slash("alice", "loras", {"name": "spicy"}),
        "This server has no LoRA named `spicy`.",
    ),
    Row(
        "loras: name is a number (raw)",
        "alice",
        lambda d: d.raw("alice", "loras", {"name": 42}),
        "`name` must be text; you gave `42`.",
    ),
    Row(
        "quota: an option /quota doesn't have (raw)",
        "alice",
        lambda d: d.raw("alice", "quota", {"member": "1"}),
        "`/quota` has no option `member`.",
    ),
    Row(
        "quota: in a direct message (raw)",
        "alice",
        lambda d: d.raw("alice", "quota", dm=True),
        "works in a server, not in direct messages",
    ),
    Row(
        "jobs: an option /jobs doesn't have (raw)",
        "alice",
        lambda d: d.raw("alice", "jobs", {"all": True}),
        "`/jobs` has no option `all`.",
    ),
    Row(
        "jobs: in a direct message (raw)",
        "alice",
        lambda d: d.raw("alice", "jobs", dm=True),
        "works in a server, not in direct messages",
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(module_world: World) -> Desk:
    """One bot for the whole table; see tests/harness/bad_inputs.py."""
    return await open_desk(module_world)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", ROWS, ids=row_id)
async def test_bad_member_command_input(
    desk: Desk, row: Row, request: pytest.FixtureRequest
) -> None:
    await check_row(desk, row, request.node)


def test_the_table_keeps_every_row() -> None:
    check_table(ROWS, at_least=10)
