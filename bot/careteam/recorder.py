"""How the assistant records an escalation in the turn it answers, without ever withholding the answer.

The action calls `record` before it returns its reply, so the reply leaves only once the escalation is
committed. When the database cannot take it (down, locked past its wait), the record is appended to a
spool file and flushed to disk instead, the patient still gets the answer, and the spool is written to
the database as soon as it takes writes again (at the next record, or by the care-team app's worker).
Each message has a unique id, so a spooled record that did reach the database is not written twice.

Spool: `TRIAGE_SPOOL_DIR` (default var/spool), one JSON line per record, owner-only files.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.careteam.store import ESCALATING, Change, EscalationStore
from bot.triage.result import Level

log = logging.getLogger(__name__)
SPOOL_NAME = "escalations.jsonl"


def spool_dir() -> Path:
    return Path(os.environ.get("TRIAGE_SPOOL_DIR", str(Path("var") / "spool")))


def public_url() -> str:
    """Where the care-team app is reached, for links in notifications."""
    return os.environ.get("TRIAGE_CARETEAM_PUBLIC_URL", "").strip()


class Recorder:
    def __init__(self, store_factory: Any = EscalationStore, spool: Path | None = None) -> None:
        self._factory = store_factory
        self._store: EscalationStore | None = None
        self.spool = (spool or spool_dir()) / SPOOL_NAME

    def store(self) -> EscalationStore:
        if self._store is None:
            self._store = self._factory()
        return self._store

    def record(
        self,
        sender_id: str,
        channel: str,
        message_id: str,
        text: str,
        triage: Mapping[str, Any],
        received_at: dt.datetime,
    ) -> Change | None:
        """Records an escalating outcome (None for others, or when it had to be spooled)."""
        if Level(triage["level"]) not in ESCALATING:
            return None
        item = {
            "sender_id": sender_id,
            "channel": channel,
            "message_id": message_id,
            "text": text,
            "triage": dict(triage),
            "received_at": received_at.isoformat(),
        }
        try:
            self.drain()
            return self._write(item)
        except (SQLAlchemyError, OSError) as error:
            log.error(
                "escalation for message %s could not be stored (%s); spooled to %s",
                message_id,
                type(error).__name__,
                self.spool,
            )
            self._append(item)
            self._store = None  # a fresh engine next time
            return None

    def _write(self, item: Mapping[str, Any]) -> Change | None:
        return self.store().record(
            item["sender_id"],
            item["channel"],
            item["message_id"],
            item["text"],
            item["triage"],
            dt.datetime.fromisoformat(item["received_at"]),
            link=public_url(),
        )

    def _append(self, item: Mapping[str, Any]) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(json.dumps(item) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def drain(self) -> int:
        """Writes spooled records to the database, oldest first; returns how many. Raises when the
        database still refuses (the spool is then left as it was)."""
        if not self.spool.exists() or self.spool.stat().st_size == 0:
            return 0
        with self.spool.open("r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            lines = [line for line in handle.read().splitlines() if line.strip()]
            for line in lines:
                try:
                    item = json.loads(line)
                except ValueError:  # a line cut short by a crash mid-write: keep it aside, never drop it
                    log.error("unreadable spool line kept in %s.bad", self.spool)
                    with self.spool.with_suffix(".bad").open("a", encoding="utf-8") as bad:
                        bad.write(line + "\n")
                    continue
                self._write(item)
            handle.seek(0)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
        log.info("wrote %d spooled escalation record(s)", len(lines))
        return len(lines)


@lru_cache(maxsize=1)
def default_recorder() -> Recorder:
    return Recorder()
