"""A true gateway latency: discord.py 2.7.1 can measure a heartbeat against the previous one.

discord.py sends heartbeats from a keep-alive thread and records the send time on that thread
only after the event loop reports the frame sent. When the gateway's ACK arrives and is handled
on the loop before that thread gets to run again (the GIL is busy with the loop; a gateway on
the same host answers in well under a millisecond), the ACK is measured against the *previous*
heartbeat: `bot.latency` becomes one heartbeat interval (41.25 s) plus the real round trip, and
discord.py logs "Can't keep up, shard ID None websocket is 41.3s behind" although nothing was
late. discord.py fixed this upstream (Rapptz/discord.py#10448: record the send time on the loop,
just before sending) after 2.7.1; until a release carries it, `record_heartbeats_on_the_loop()`
does the same. It changes nothing once discord.py has its own fix
(docs/discord-limits.md, "Gateway heartbeats").
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from discord.gateway import DiscordWebSocket, KeepAliveHandler

_PATCHED = "_flux_heartbeat_recorded_on_loop"


def record_heartbeats_on_the_loop() -> bool:
    """Stamp each heartbeat's send time on the event loop; True if discord.py needed it."""
    if hasattr(KeepAliveHandler, "_send_heartbeat"):
        return False  # discord.py with the upstream fix: it records the time itself
    if getattr(DiscordWebSocket, _PATCHED, False):
        return True
    send: Callable[[DiscordWebSocket, Any], Awaitable[None]] = DiscordWebSocket.send_heartbeat

    async def send_heartbeat(self: DiscordWebSocket, data: Any) -> None:
        keep_alive = self._keep_alive
        if keep_alive is not None:
            keep_alive._last_send = time.perf_counter()
        await send(self, data)

    DiscordWebSocket.send_heartbeat = send_heartbeat  # type: ignore[method-assign]
    setattr(DiscordWebSocket, _PATCHED, True)
    return True
