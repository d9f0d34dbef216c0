"""A throwaway PostgreSQL server for tests (tools/pgserver.py): a fresh cluster in a temporary folder,
listening on 127.0.0.1 only, started once per session and stopped and deleted at its end.

`make test` installs Debian's postgresql package when its server binaries are missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tools import pgserver
from tools.pgserver import Server, free_port

__all__ = ["Server", "free_port", "fresh_database", "postgres_server", "postgres_url"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    if pgserver.server_binaries() is None:
        pytest.fail(pgserver.missing_binaries_message("make test"), pytrace=False)
    with pgserver.running() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: Server) -> str:
    """The URL of a database on the session's throwaway server (`postgresql://...`)."""
    return postgres_server.url()


def fresh_database(server: Server) -> str:
    """A new database of its own for one test, so tests cannot see each other's rows."""
    return server.create_database(f"test_{uuid.uuid4().hex[:12]}")
