"""The `telemed` command: serve, migrate, import-insured, staff add, demo."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from telemed.app import create_app, open_database
from telemed.clock import SystemClock
from telemed.config import ConfigError, Settings, load_settings
from telemed.db import Database
from telemed.errors import TelemedError
from telemed.logs import setup_logging
from telemed.roles import STAFF_ROLES, Role
from telemed.runtime import tune_gc_after_startup
from telemed.services import insured
from telemed.services.audit import Who
from telemed.services.staff import add_staff

log = logging.getLogger("telemed.cli")
T = TypeVar("T")
CLI_ACTOR = Who("cli", None, "local")


def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = await open_database(settings)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    app = create_app(settings)
    if args.gc_tune:
        tune_gc_after_startup(app)
    db_kind = "SQLite" if settings.database.is_sqlite else "PostgreSQL"
    log.info(  # a log line like every other (one JSON object per line by default)
        "telemed serving on http://%s:%s (database: %s, redis: %s, sms: %s)",
        host,
        port,
        db_kind,
        "on" if settings.redis.url else "off",
        settings.sms.backend,
    )
    web.run_app(app, host=host, port=port, print=None, access_log=None)
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    _with_db(settings, lambda db: asyncio.sleep(0))
    print("schema is up to date")
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"no such file: {path}", file=sys.stderr)
        return 2
    clock = SystemClock()
    parsed = insured.parse_insured_csv(path.read_bytes(), today=insured.local_today(clock))

    async def work(db: Database) -> insured.ImportReport:
        return await insured.import_insured(db, clock, parsed, who=CLI_ACTOR)

    report = _with_db(settings, work)
    print(insured.format_report(report))
    return 1 if report.errors else 0


def cmd_staff_add(settings: Settings, args: argparse.Namespace) -> int:
    password = args.password or getpass.getpass("password: ")

    async def work(db: Database) -> str:
        staff = await add_staff(
            db,
            SystemClock(),
            role=Role(args.role),
            login=args.login,
            password=password,
            full_name=args.name or args.login,
            who=CLI_ACTOR,
        )
        return staff.id

    staff_id = _with_db(settings, work)
    print(f"added {args.role} {args.login} (id {staff_id})")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from telemed.demo import load_demo

    print(_with_db(settings, lambda db: load_demo(db, SystemClock())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="config file (default: $TELEMED_CONFIG, else ./config.yaml)",
    )
    parser = argparse.ArgumentParser(prog="telemed", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="serve HTTP, the pages and Socket.IO")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--no-gc-tune",
        dest="gc_tune",
        action="store_false",
        help="keep CPython's garbage-collector settings (default: gc.freeze() after start-up "
        "and a higher threshold, see docs/performance.md)",
    )
    serve.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="overrides logging.level (default INFO; libraries' routine INFO shows at DEBUG)",
    )
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", parents=[common], help="create or upgrade the schema").set_defaults(
        func=cmd_migrate
    )

    imp = sub.add_parser(
        "import-insured", parents=[common], help="import the insurer's CSV list of insured persons"
    )
    imp.add_argument("file")
    imp.set_defaults(func=cmd_import)

    staff = sub.add_parser("staff", parents=[common], help="manage staff accounts")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True)
    add = staff_sub.add_parser("add", parents=[common], help="add a staff account")
    add.add_argument("--role", required=True, choices=sorted(r.value for r in STAFF_ROLES))
    add.add_argument("--login", required=True)
    add.add_argument("--password", help="(asked for when absent)")
    add.add_argument("--name")
    add.set_defaults(func=cmd_staff_add)

    sub.add_parser("demo", parents=[common], help="load demo patients and staff").set_defaults(
        func=cmd_demo
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"telemed: bad configuration: {exc}", file=sys.stderr)
        return 2
    level = getattr(args, "log_level", None)
    setup_logging(
        settings.logging.model_copy(update={"level": level}) if level else settings.logging
    )
    try:
        code: int = args.func(settings, args)
    except TelemedError as exc:
        print(f"telemed: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
