"""The command line, `ledger …`: parsing, and the run of the command asked for.

Each command group lives in a module of its own (`run`, `database`, `audit`,
`jobs`, `queues`, `schedules`, `tenants`, `workflows`), which adds its subcommands to the parser with the function that runs
them; heavy modules are imported by the commands that need them, so `ledger
token` and `ledger probe` start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ledger import config, errors, logs
from service.cli import audit, database, jobs, queues, run, schedules, tenants, webhooks, workflows

Runner = Callable[[config.Settings], Coroutine[Any, Any, int]]


def parser() -> argparse.ArgumentParser:
    """`ledger`'s parser: each subcommand sets `runner(args) -> Runner` (or `now(args, settings)`)."""
    top = argparse.ArgumentParser(
        prog="ledger", description="Job Ledger: jobs whose every transition is a verifiable event."
    )
    sub = top.add_subparsers(dest="command", required=True)
    for group in (run, database, jobs, queues, schedules, tenants, workflows, webhooks, audit):
        group.register(sub)
    return top


def runner(args: argparse.Namespace) -> Runner:
    """The coroutine function that carries out the parsed command."""
    make: Callable[[argparse.Namespace], Runner] = args.runner
    return make(args)


async def _run_until_signalled(coro: Coroutine[Any, Any, int]) -> int:
    """Run `coro`; SIGTERM is treated like Ctrl-C (cancel, clean up, exit).

    `ledger api` and `ledger serve` take the signals over while they run, to drain
    instead of cancelling (see `service.http.server.Shutdown`).
    """
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return 0
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (a dependency on Linux), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = config.from_env()
        logs.configure(settings.log_level, settings.log_format)
        now: Callable[[argparse.Namespace, config.Settings], int] | None = getattr(
            args, "now", None
        )
        if now is not None:  # no event loop, no database (`ledger token`)
            return now(args, settings)
        return asyncio.run(
            _run_until_signalled(runner(args)(settings)), loop_factory=_loop_factory()
        )
    except errors.LedgerError as exc:
        print(f"ledger: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
