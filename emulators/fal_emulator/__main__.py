"""Run the emulator on its own: `python -m emulators.fal_emulator --port 8765`.

Prints one JSON line with the three base URLs and the key, then serves until SIGINT or
SIGTERM. Knobs can be changed while it runs: `POST /_emulator/knobs` with a JSON object on the
queue URL; `GET /_emulator/requests` and `GET /_emulator/jobs` report what happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from emulators.fal_emulator.server import FalEmulator


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m emulators.fal_emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="queue host port (0: any free)")
    parser.add_argument("--rest-port", type=int, default=0)
    parser.add_argument("--cdn-port", type=int, default=0)
    parser.add_argument(
        "--single-port", action="store_true", help="serve queue, REST and CDN on --port"
    )
    parser.add_argument("--key", default=None, help="the valid key (id:secret); random if unset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queue-delay", type=float, default=0.0)
    parser.add_argument("--run-time", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=10)
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    emulator = FalEmulator(
        seed=args.seed,
        key=args.key,
        host=args.host,
        port=args.port,
        rest_port=args.rest_port,
        cdn_port=args.cdn_port,
        single_port=args.single_port,
        queue_delay=args.queue_delay,
        run_time=args.run_time,
        concurrency=args.concurrency,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with emulator:
        info = {
            "queue_url": emulator.queue_url,
            "rest_url": emulator.rest_url,
            "cdn_url": emulator.cdn_url,
            "key": emulator.key,
        }
        print(json.dumps(info), flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
