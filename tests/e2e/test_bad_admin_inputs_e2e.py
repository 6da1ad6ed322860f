"""Bad input to the rest of /admin (quota, budget, settings, usage, jobs) answered with its own
message, privately, and server settings are unchanged: numbers out of range or of the wrong
type, choices that don't exist, roles, members and channels that aren't resolved, options the
subcommands don't have. The checks every row gets are in tests/harness/bad_inputs.py."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

from tests.harness.bad_inputs import (
    Act,
    Answer,
    Desk,
    Row,
    admin,
    check_row,
    check_table,
    open_desk,
    row_id,
)
from tests.harness.e2e import World


def with_role(command: str, **options: Any) -> Act:
    async def act(desk: Desk) -> Answer:
        return await desk.raw(
            "carol", f"admin {command}", {"role": desk.emu.role("Member"), **options}
        )

    return act


def with_member(command: str, **options: Any) -> Act:
    async def act(desk: Desk) -> Answer:
        return await desk.raw("carol", f"admin {command}", {"member": desk.who("alice"), **options})

    return act


def with_channel(command: str, **options: Any) -> Act:
    async def act(desk: Desk) -> Answer:
        general = desk.emu.channel("general")
        return await desk.raw("carol", f"admin {command}", {"channel": general, **options})

    return act


ROWS: list[Row] = [
    Row(
        "admin quota default: negative (raw)",
        "carol",
        admin("quota default", {"images": -5}, raw=True),
        "`images` must be between 0 and 10,000; you gave -5.",
    ),
    Row(
        "admin quota default: text (raw)",
        "carol",
        admin("quota default", {"images": "ten"}, raw=True),
        "`images` must be a whole number; you gave `ten`.",
    ),
    Row(
        "admin quota default: zero-hour window (raw)",
        "carol",
        admin("quota default", {"images": 5, "window_hours": 0}, raw=True),
        "`window_hours` must be between 1 and 744; you gave 0.",
    ),
    Row(
        "admin quota role: role that isn't resolved (raw)",
        "carol",
        admin("quota role", {"role": "123", "images": 5}, raw=True),
        "`role` must be a role of this server.",
    ),
    Row(
        "admin quota role: -2 images (raw)",
        "carol",
        with_role("quota role", images=-2),
        "`images` must be between -1 and 10,000; you gave -2.",
    ),
    Row(
        "admin quota user: -7 images (raw)",
        "carol",
        with_member("quota user", images=-7),
        "`images` must be between -1 and 10,000; you gave -7.",
    ),
    Row(
        "admin quota exempt: remove is text (raw)",
        "carol",
        with_role("quota exempt", remove="yes"),
        "`remove` must be true or false; you gave `yes`.",
    ),
    Row(
        "admin quota reset: member that isn't resolved (raw)",
        "carol",
        admin("quota reset", {"member": "42"}, raw=True),
        "`member` must be a member of this server.",
    ),
    Row(
        "admin budget set: negative (raw)",
        "carol",
        admin("budget set", {"usd": -1.0}, raw=True),
        "`usd` must be between 0 and 1,000,000; you gave -1.",
    ),
    Row(
        "admin budget set: NaN (raw)",
        "carol",
        admin("budget set", {"usd": "NaN"}, raw=True),
        "`usd` must be a number; you gave `NaN`.",
    ),
    Row(
        "admin budget show: unknown option (raw)",
        "carol",
        admin("budget show", {"month": "1"}, raw=True),
        "`/admin budget show` has no option `month`.",
    ),
    Row(
        "admin settings show: unknown option (raw)",
        "carol",
        admin("settings show", {"all": True}, raw=True),
        "`/admin settings show` has no option `all`.",
    ),
    Row(
        "admin settings rerun: unknown choice (raw)",
        "carol",
        admin("settings rerun", {"who": "evil"}, raw=True),
        "`who` must be one of: anyone, requester. You gave `evil`.",
    ),
    Row(
        "admin settings nsfw: unknown choice (raw)",
        "carol",
        admin("settings nsfw", {"policy": "always"}, raw=True),
        "`policy` must be one of: block, spoiler, allow-in-nsfw-channels.",
    ),
    Row(
        "admin settings channel: unknown rule (raw)",
        "carol",
        with_channel("settings channel", rule="maybe"),
        "`rule` must be one of: allow, deny, clear. You gave `maybe`.",
    ),
    Row(
        "admin settings channel: channel that isn't resolved (raw)",
        "carol",
        admin("settings channel", {"channel": "999", "rule": "deny"}, raw=True),
        "`channel` must be a channel of this server.",
    ),
    Row(
        "admin settings caps: zero images (raw)",
        "carol",
        admin("settings caps", {"max_images": 0}, raw=True),
        "`max_images` must be between 1 and 4; you gave 0.",
    ),
    Row(
        "admin settings caps: 500 jobs in flight (raw)",
        "carol",
        admin("settings caps", {"max_in_flight": 500}, raw=True),
        "`max_in_flight` must be between 1 and 50; you gave 500.",
    ),
    Row(
        "admin settings managers: unknown action (raw)",
        "carol",
        with_role("settings managers", action="promote"),
        "`action` must be one of: add, remove. You gave `promote`.",
    ),
    Row(
        "admin usage: unknown option (raw)",
        "carol",
        admin("usage", {"csv": "x"}, raw=True),
        "`/admin usage` has no option `csv`.",
    ),
    Row(
        "admin jobs: unknown option (raw)",
        "carol",
        admin("jobs", {"all": True}, raw=True),
        "`/admin jobs` has no option `all`.",
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(module_world: World) -> Desk:
    """One bot for the whole table; see tests/harness/bad_inputs.py."""
    return await open_desk(module_world)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", ROWS, ids=row_id)
async def test_bad_admin_input(desk: Desk, row: Row, request: pytest.FixtureRequest) -> None:
    await check_row(desk, row, request.node)


def test_the_table_keeps_every_row() -> None:
    check_table(ROWS, at_least=21)
