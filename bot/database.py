"""The project's one database: conversations (Rasa's tracker store), SMS records, escalations and the
care-team app's accounts live side by side in it, so one backup and one set of permissions covers all.

`TRIAGE_DB_URL` names it as an SQLAlchemy URL (`postgresql://user:password@host:5432/triage`);
otherwise `TRIAGE_DB_DIALECT` and `TRIAGE_DB` do, as they do for the tracker store (SQLite file
var/triage.db by default).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

#: How long an SQLite connection waits for another's write lock before failing (`TRIAGE_SQLITE_BUSY_MS`).
BUSY_TIMEOUT_MS = int(os.environ.get("TRIAGE_SQLITE_BUSY_MS", "5000"))


def sqlite_pragmas(connection: Any, record: Any) -> None:
    """Write-ahead log, full sync, and a wait on locks; for every SQLite connection of the project. Here,
    not beside the tracker store, so that the processes that are not Rasa do not import Rasa for it."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def database_url(env: Mapping[str, str] | None = None) -> str:
    """The conversation database's URL, from the same settings the tracker store uses."""
    env = os.environ if env is None else env
    url = env.get("TRIAGE_DB_URL", "").strip()
    if url:
        return url
    dialect = env.get("TRIAGE_DB_DIALECT", "sqlite")
    db = env.get("TRIAGE_DB", str(Path("var") / "triage.db"))
    return f"{dialect}:///{db}"


def create_engine(url: str | None = None, **options: Any) -> sa.engine.Engine:
    """An engine for `url` (default: `database_url()`); SQLite connections get the project's pragmas
    (write-ahead log, full sync, a wait on locks) and the file is made readable by its owner only."""
    url = url or database_url()
    if sa.engine.make_url(url).get_backend_name() == "sqlite" and sa.engine.make_url(url).database not in (
        None,
        "",
        ":memory:",
    ):
        # SQLAlchemy 1.4 opens a new SQLite connection per transaction for a file: each one re-runs the
        # pragmas and its close checkpoints the write-ahead log, most of an escalation's cost (22.8 ms to
        # 6.7 ms kept open). Connections are kept in a pool instead, each used by one thread at a time.
        options.setdefault("poolclass", sa.pool.QueuePool)
        options.setdefault("connect_args", {"check_same_thread": False})
    engine = sa.create_engine(url, future=True, **options)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", sqlite_pragmas)
        path = engine.url.database
        if path and path != ":memory:":
            _owner_only(Path(path))
    return engine


def _owner_only(path: Path) -> None:
    """Creates the SQLite file (and its folder) with mode 0600 if it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
