"""`fanout run`: the long-running bot — signals from a watched file and/or a webhook, paper or live."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal as os_signal
import sys

from engine import ExecutionConfig
from fanout.env_values import env_seconds
from fanout.errors import explain
from fanout.modes import build_live, build_paper, resolve_mode
from fanout.options import add_balance_options, balances_from_args
from fanout.signal_sources import FileSignalSource, WebhookSignalSource, webhook_settings
from fanout.tasks import BackgroundTasks
from live.env import DEFAULT_ENV_FILE
from storage.database import database_url, wait_until_reachable
from storage.instance_lock import InstanceLocked

log = logging.getLogger("fanout.run")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the bot (TRADING_MODE=paper|live) on signals from a file and/or a webhook",
                       description="Run the bot. The mode comes from --mode or TRADING_MODE (default paper); live "
                                   "needs TRADING_MODE=live (or --mode live) explicitly.")
    p.add_argument("--mode", choices=["paper", "live"], help="overrides TRADING_MODE")
    p.add_argument("--env-file", default=DEFAULT_ENV_FILE, help=f"settings file (default ./{DEFAULT_ENV_FILE})")
    p.add_argument("--signals", metavar="FILE", help="signals file to watch (default SIGNALS_FILE)")
    p.add_argument("--webhook", action="store_true", help="serve the HTTP webhook (also when WEBHOOK_TOKEN is set)")
    p.add_argument("--once", action="store_true", help="process the signals file and one polling round, then exit")
    p.add_argument("--reconcile", choices=["stop", "close", "off"], default="stop",
                   help="live start-up: give unprotected positions a stop (default), close them, or skip")
    p.add_argument("--standby", action=argparse.BooleanOptionalAction, default=None,
                   help="when another bot of this mode holds the database, wait and take over when it stops "
                        "(default, except with --once) instead of exiting with code 3")
    add_balance_options(p, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from live.discord import build_notifier
    from live.env import load_env

    # every setting is checked before anything connects: a refusal costs nothing
    env = load_env(args.env_file)
    mode = resolve_mode(args.mode, env)
    config = ExecutionConfig.from_env(env)
    balances = balances_from_args(args) if (args.balances or args.accounts) else None
    signals_file = args.signals or env.get("SIGNALS_FILE")
    webhook_kwargs = webhook_settings(env) if (args.webhook or env.get("WEBHOOK_TOKEN")) else None
    if not signals_file and webhook_kwargs is None:
        raise ValueError("no signal source: give --signals FILE / SIGNALS_FILE, or set WEBHOOK_TOKEN for the webhook")
    database_wait = env_seconds(env, "DATABASE_WAIT_SECONDS", 60, allow_zero=True)
    notifier = build_notifier(env)
    try:
        await wait_until_reachable(database_url(env), timeout=database_wait)
        standby = not args.once if args.standby is None else args.standby
        if mode == "live":
            runtime = await build_live(env, config, notifier, reconcile=args.reconcile != "off",
                                       unprotected=args.reconcile if args.reconcile != "off" else "stop",
                                       standby=standby, streams=not args.once)
        else:
            runtime = await build_paper(env, config, notifier, balances=balances, standby=standby)
            print(f"📄 PAPER trading: {len(runtime.accounts)} virtual accounts at live prices "
                  f"({', '.join(runtime.accounts[i].name for i in range(min(5, len(runtime.accounts))))}"
                  f"{', …' if len(runtime.accounts) > 5 else ''})", flush=True)
    except InstanceLocked as exc:
        await _close_notifier(notifier)
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except BaseException:
        await _close_notifier(notifier)
        raise
    service = runtime.service
    stop = asyncio.Event()
    if runtime.lock is not None:  # a lost hold on the database stops this bot
        runtime.lock.on_lost(stop.set)
    loop = asyncio.get_running_loop()
    for sig in (os_signal.SIGINT, os_signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    webhook = None
    # a loop that dies (it should not: each catches its own errors) stops the bot instead of leaving it deaf
    tasks = BackgroundTasks(on_failure=lambda _what, _exc: stop.set())
    try:
        if signals_file:
            source = FileSignalSource(signals_file, service.handle)
            if args.once:
                try:
                    await source.scan()
                except Exception as exc:  # noqa: BLE001 — reported, the signal stays unprocessed for next time
                    print(f"error: {signals_file}: {explain(exc)}", file=sys.stderr)
                    return 1
            else:
                tasks.spawn(source.run(stop), f"signals file {signals_file}")
            log.info("👀 watching %s for signals", signals_file)
        if webhook_kwargs is not None:
            webhook = WebhookSignalSource(service.handle, **webhook_kwargs, is_processed=runtime.journal.is_processed)
            await webhook.start()
        if args.once:
            await service.tick_once()
        else:
            tasks.spawn(service.run_ticks(stop), "price and order polling")
            await stop.wait()
    finally:
        await tasks.close()
        if webhook is not None:
            await webhook.stop()
        await _close_notifier(runtime.notifier)
        await runtime.close()
    s = runtime.executor.stats
    print(f"📊 {mode}: {s.signals} signals, {s.trades} account trades, {s.successes} succeeded, "
          f"{s.failures} failed, {s.skipped} skipped", flush=True)
    if runtime.lock is not None and runtime.lock.lost:
        print("error: this bot lost its hold on the database and stopped trading (see the log)", file=sys.stderr)
        return 3
    return 1 if tasks.failures else 0


async def _close_notifier(notifier: object) -> None:
    closer = getattr(notifier, "aclose", None)
    if closer is not None:
        await closer()
