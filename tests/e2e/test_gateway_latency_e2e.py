"""The bot's gateway latency is measured against the heartbeat it answers, so a gateway that
answers within a millisecond is never reported "41.3s behind" (cogs/utils/heartbeat.py)."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.harness.e2e import World


async def test_a_heartbeat_records_its_send_time_as_it_goes_out(world: World) -> None:
    ws = world.bot._get_websocket(shard_id=0)  # the bot runs one shard here
    keep_alive = ws._keep_alive
    assert keep_alive is not None, "the bot has no heartbeat running"
    # What the keep-alive thread runs on the loop for each heartbeat: discord.py's own
    # `_send_heartbeat` once it has the fix, `send_heartbeat` (with ours) before that.
    send: Callable[[dict[str, Any]], Awaitable[None]] = getattr(
        keep_alive, "_send_heartbeat", functools.partial(ws.send_heartbeat)
    )
    mark = world.emu.mark()
    before = time.perf_counter()
    await send(keep_alive.get_payload())
    # Stamped on the loop, so the ACK can never be measured against the previous heartbeat,
    # however late the keep-alive thread gets the GIL back.
    assert keep_alive._last_send >= before
    await world.emu.wait_for("heartbeat", since=mark)
