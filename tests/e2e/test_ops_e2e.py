"""Operator experience: health and metrics, command sync on change, `python bot.py check`."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx

from tests.harness.e2e import World

ROOT = Path(__file__).resolve().parents[2]


async def with_metrics(world: World) -> int:
    world.settings = world.settings.model_copy(
        update={"metrics_port": 0, "metrics_host": "127.0.0.1"}
    )
    bot = await world.restart()
    port = bot.get_cog("Health").port  # type: ignore[union-attr]
    assert port
    return int(port)


async def test_healthz_and_metrics(world: World) -> None:
    port = await with_metrics(world)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        health = await http.get("/healthz")
        assert (health.status_code, health.text) == (200, "ok\n")
        ix = await world.edit()
        await world.reply_text(ix)
        await world.result()
        await world.job_in(1, "delivered")
        text = (await http.get("/metrics")).text
        assert 'flux_job_transitions_total{state="admitted"} 1.0' in text
        assert 'flux_job_transitions_total{state="delivered"} 1.0' in text
        assert "flux_jobs_in_flight 0.0" in text
        assert "flux_delivery_seconds_count 1.0" in text
        assert "flux_event_loop_lag_seconds_count" in text  # the loop-lag monitor runs
        await world.bot.storage.close()  # the database goes away under the bot
        broken = await http.get("/healthz")
        assert broken.status_code == 503 and "database not writable" in broken.text


async def test_global_sync_only_when_commands_change(world: World) -> None:
    def global_syncs() -> int:
        return sum(
            1
            for r in world.emu.requests
            if r.method == "PUT" and r.path.endswith("/commands") and "/guilds/" not in r.path
        )

    assert global_syncs() == 1
    await world.restart()
    assert global_syncs() == 1  # same commands: no second global sync
    await world.bot.storage.settings.set_meta("command_tree_hash", "stale")
    await world.restart()
    assert global_syncs() == 2


async def test_dev_guild_syncs_to_that_server(world: World) -> None:
    world.settings = world.settings.model_copy(update={"dev_guild_id": world.emu.guild.id})
    await world.restart()
    guild_syncs = [
        r
        for r in world.emu.requests
        if r.method == "PUT" and f"/guilds/{world.emu.guild.id}/" in r.path
    ]
    assert len(guild_syncs) == 1
    names = {command["name"] for command in guild_syncs[0].json}
    assert {"edit", "loras", "quota", "jobs", "admin"} <= names


async def run_check(world: World, *args: str, **env: str) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if k.upper() not in {"DISCORD_TOKEN", "FAL_KEY"}}
    s = world.settings
    base.update(
        {
            "DISCORD_TOKEN": s.discord_token.get_secret_value(),
            "FAL_KEY": s.fal_key.get_secret_value(),
            "DISCORD_API_URL": str(s.discord_api_url),
            "DISCORD_GATEWAY_URL": str(s.discord_gateway_url),
            "FAL_QUEUE_URL": world.fal.queue_url,
            "FAL_REST_URL": world.fal.rest_url,
            "FAL_CDN_URL": world.fal.cdn_url,
            "DATABASE_PATH": str(s.database_path.parent / "check.sqlite3"),
            **env,
        }
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bot.py"),
        "check",
        *args,
        cwd=str(s.database_path.parent),
        env=base,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode()


async def test_check_online_against_both_services(world: World) -> None:
    code, out = await run_check(world)
    assert code == 0, out
    assert "settings: OK" in out
    assert "database: OK" in out
    assert "commands to sync to every server: " in out and "edit" in out
    assert "discord token: OK, logged in as" in out
    assert "fal key: OK" in out
    assert world.fal.key.split(":")[1] not in out


async def test_check_reports_a_rejected_fal_key(world: World) -> None:
    code, out = await run_check(world, FAL_KEY="bad-id:bad-secret")
    assert code == 1
    assert "fal key: REJECTED by fal" in out
    assert "bad-secret" not in out


async def test_check_offline_says_what_it_skipped(world: World) -> None:
    code, out = await run_check(world, "--offline")
    assert code == 0
    assert "discord token: skipped (--offline)" in out
    assert "fal key: skipped (--offline)" in out
