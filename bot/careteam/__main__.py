"""The care-team app's commands.

    python -m bot.careteam add-user NAME [--role clinician|admin] [--name "Full Name"] [--password-stdin]
    python -m bot.careteam set-password NAME [--password-stdin]
    python -m bot.careteam disable NAME | enable NAME
    python -m bot.careteam users
    python -m bot.careteam serve [--host 127.0.0.1] [--port 5006]
    python -m bot.careteam notify          # the outbox worker alone (serve runs one too)
    python -m bot.careteam patients add|list|update|discharge|link …   (bot/careteam/patients_cli.py)
    python -m bot.careteam export-fhir [--since ISO-8601] [--output FILE]

Passwords are asked twice at the terminal, or read from the first line of stdin with --password-stdin;
never from the command line, where other users and the shell history would see them.

Settings (environment): the database as for the assistant (TRIAGE_DB_URL, or TRIAGE_DB_DIALECT and
TRIAGE_DB: var/triage.db); TRIAGE_CARETEAM_PORT (5006); TRIAGE_CARETEAM_SECURE_COOKIES (1: cookies only
over HTTPS, which browsers also allow on http://localhost; 0 only for a plain-HTTP test set-up);
TRIAGE_CARETEAM_IDLE_MINUTES (30: minutes without a user action before a session ends; the queue's
auto-refresh is not one); TRIAGE_CARETEAM_REFRESH_SECONDS (15: how often the queue page refreshes);
SANIC_PROXIES_COUNT (unset: the client's address is the connection's; set it to the number of proxies in
front of the app, only when nothing reaches it directly, so that login throttling and the audit log see
the client's address from X-Forwarded-For instead of the proxy's); TRIAGE_NOTIFY_URL and
TRIAGE_NOTIFY_SECRET (bot/careteam/notifier.py).

Log records are one line each (bot/logging_safety.py, installed when `bot` is imported).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import logging
import os
import sys

from bot.careteam import patients_cli
from bot.careteam.accounts import ROLES, AccountError, Accounts, Policy
from bot.database import create_engine


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password (at least 12 characters): ")
    if getpass.getpass("Again: ") != first:
        raise AccountError("the passwords differ")
    return first


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value not in ("0", "false", "no", "off")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.careteam", description="The care-team review app.")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add-user", help="create an account")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, default="clinician")
    add.add_argument("--name", default="", help="the name shown in the app and the audit log")
    add.add_argument("--password-stdin", action="store_true")
    change = commands.add_parser("set-password", help="change a password (ends that user's sessions)")
    change.add_argument("username")
    change.add_argument("--password-stdin", action="store_true")
    for name in ("disable", "enable"):
        commands.add_parser(name, help=f"{name} an account").add_argument("username")
    commands.add_parser("users", help="list the accounts")
    serve = commands.add_parser("serve", help="run the app (and the notification worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=int(os.environ.get("TRIAGE_CARETEAM_PORT", "5006")))
    commands.add_parser("notify", help="run the notification worker alone")
    patients_cli.add_commands(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "serve":
            return _serve(args.host, args.port)
        if args.command == "notify":
            return _notify()
        if args.command in ("patients", "export-fhir"):
            return patients_cli.run(args)
        accounts = Accounts(create_engine())
        if args.command == "add-user":
            user = accounts.add_user(args.username, _password(args.password_stdin), args.role, args.name)
            print(f"added {user.role} {user.username}")
        elif args.command == "set-password":
            accounts.set_password(args.username.strip().lower(), _password(args.password_stdin))
            print(f"password changed for {args.username}; their sessions have ended")
        elif args.command in ("disable", "enable"):
            accounts.set_disabled(args.username.strip().lower(), args.command == "disable")
            print(f"{args.command}d {args.username}")
        else:
            for user in accounts.users():
                print(f"{user.username}\t{user.role}\t{'disabled' if user.disabled else 'active'}\t{user.display_name}")
    except (AccountError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _serve(host: str, port: int) -> int:
    from bot.careteam.app import Settings, create_app
    from bot.careteam.notifier import NotifierSettings

    idle = float(os.environ.get("TRIAGE_CARETEAM_IDLE_MINUTES", "30"))
    settings = Settings(
        secure_cookies=_env_flag("TRIAGE_CARETEAM_SECURE_COOKIES", True),
        policy=Policy(idle=dt.timedelta(minutes=idle)),
        notifier=NotifierSettings.from_env(),
        refresh_s=max(int(os.environ.get("TRIAGE_CARETEAM_REFRESH_SECONDS", "15")), 1),
    )
    app = create_app(settings)
    app.run(host=host, port=port, access_log=False, motd=False)
    return 0


def _notify() -> int:
    from bot.careteam.notifier import Notifier, NotifierSettings
    from bot.careteam.store import EscalationStore

    settings = NotifierSettings.from_env()
    if settings is None:
        print("error: TRIAGE_NOTIFY_URL is not set: nothing to deliver to", file=sys.stderr)
        return 2
    asyncio.run(Notifier(EscalationStore(), settings).run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
