"""A throwaway PostgreSQL server: a fresh cluster in a folder of its own, listening on 127.0.0.1 only (and
a unix socket inside that folder), for the tests (tests/postgres.py) and the scale-out deployment
(tools/cluster.py).

The server binaries are Debian's (`/usr/lib/postgresql/<version>/bin`, the newest version found);
`make test` and `make cluster` install the `postgresql` package when they are missing. initdb and the
server refuse to run as root, so under root the cluster belongs to the `postgres` system user and its
commands run through `runuser`. Every connection, over TCP or the unix socket, authenticates with a
password (SCRAM-SHA-256): a random one per server, made at its start and carried in its URLs. Loopback
is not a boundary on a shared host: any local user or process could otherwise connect as the
superuser and read every conversation.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

PG_ROOT = Path("/usr/lib/postgresql")
SYSTEM_USER = "postgres"
DATABASE = "triage_test"
#: The server is only ever a scratch copy: durability settings off make start-up and commits fast.
SERVER_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=100")
START_TIMEOUT_S = 60


def server_binaries(root: Path = PG_ROOT) -> Path | None:
    """The newest `bin` folder under `root` that has initdb, pg_ctl and postgres; None when there is none."""
    found = []
    for folder in root.glob("*/bin"):
        version = re.match(r"\d+", folder.parent.name)
        if version and all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            found.append((int(version.group()), folder))
    return max(found)[1] if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    bin: Path
    folder: Path
    port: int = 0
    #: The database `start` creates, and the default of `url`.
    database: str = DATABASE
    settings: tuple[str, ...] = SERVER_SETTINGS
    #: The superuser's password (random per server); in every URL this server gives.
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    _as_postgres: bool = field(default=False, init=False)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def url(self, database: str | None = None) -> str:
        """The database's URL, with the password (token_urlsafe needs no quoting in a URL)."""
        return f"postgresql://{SYSTEM_USER}:{self.password}@127.0.0.1:{self.port}/{database or self.database}"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", SYSTEM_USER, "--"] if self._as_postgres else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{log}")

    def start(self) -> None:
        self._as_postgres = os.getuid() == 0
        if self._as_postgres:
            shutil.chown(self.folder, SYSTEM_USER, SYSTEM_USER)
        # initdb reads the password from a file (never a command line, which other users can list).
        password_file = self.folder / "password"
        descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(self.password + "\n")
        if self._as_postgres:
            shutil.chown(password_file, SYSTEM_USER, SYSTEM_USER)
        try:
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", SYSTEM_USER, "--auth=scram-sha-256",
                      f"--pwfile={password_file}", "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        finally:
            password_file.unlink()
        # A port found free may be taken before the server binds it; another one is tried then.
        for attempt in range(3):
            self.port = free_port()
            options = ["-c listen_addresses=127.0.0.1", f"-p {self.port}", f"-k {self.folder}"]
            options += [f"-c {setting}" for setting in self.settings]
            try:
                self._run(str(self.bin / "pg_ctl"), "start", "-w", "-t", str(START_TIMEOUT_S), "-D", str(self.data),
                          "-l", str(self.log), "-o", " ".join(options))  # fmt: skip
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self.create_database(self.database)

    def create_database(self, name: str) -> str:
        """A new, empty database on this server; returns its URL."""
        engine = sa.create_engine(self.url("postgres"), future=True, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "stop", "-w", "-m", "immediate", "-D", str(self.data))


def missing_binaries_message(make_target: str) -> str:
    return (
        f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) under {PG_ROOT}/*/bin: run `{make_target}`, "
        "which installs Debian's postgresql package, or `apt-get install postgresql`"
    )


@contextmanager
def running(database: str = DATABASE, make_target: str = "make test") -> Iterator[Server]:
    """A server started in a new temporary folder, with `database` created; stopped and deleted at the end.

    The folder is a temporary one even when the caller has a working folder of its own: under root the
    `postgres` user must be able to enter it, which a folder under /root or a private home may not allow.
    """
    binaries = server_binaries()
    if binaries is None:
        raise RuntimeError(missing_binaries_message(make_target))
    server = Server(binaries, Path(tempfile.mkdtemp(prefix="triage-pg-")), database=database)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(server.folder, ignore_errors=True)
