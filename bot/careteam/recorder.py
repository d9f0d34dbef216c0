"""How the assistant records an escalation in the turn it answers, without ever withholding the answer.

The action calls `record` before it returns its reply, so the reply leaves only once the escalation is
committed. When the database cannot take it (down, locked past its wait), the record is appended to a
spool file and flushed to disk instead, the patient still gets the answer, and the spool is written to
the database as soon as it takes writes again (at the next record, or by the care-team app's worker).
Each message has a unique id, so a spooled record that did reach the database is not written twice.

What a record holds never keeps it off the queue. The store makes text, ids and times storable
(`storable`); a record it still refuses for what it holds is written again in its plainest form (the
words, level `unclear` unless a valid level is known, no symptoms), and a spool line cut short by a
crash is read as far as it goes and written the same way. Only when even that fails is the record set
aside in `escalations.bad` (and logged), so that it does not hold up the records after it; a damaged
line is copied there as well, as it was.

A message refused by a rate limit is recorded with `incident`, the source whose limit refused it, so
that a flood makes one grouped incident rather than one escalation per message (see the store).

Spool: `TRIAGE_SPOOL_DIR` (default var/spool), one JSON line per record, owner-only files.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, StatementError

from bot.careteam import storable
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
        incident: str = "",
    ) -> Change | None:
        """Records an escalating outcome (None for others, or when it had to be spooled). `incident`: the
        source whose rate limit refused the message (`address 203.0.113.9`), to group a flood."""
        level = storable.level(triage.get("level") if isinstance(triage, Mapping) else None)
        if level not in ESCALATING:
            return None
        item: dict[str, Any] = storable.data(
            {
                "sender_id": sender_id,
                "channel": channel,
                "message_id": message_id,
                "text": text,
                "triage": dict(triage) if isinstance(triage, Mapping) else {"level": level.value},
                "received_at": storable.moment(received_at).isoformat(),
            }
        )
        if incident:
            item["incident"] = storable.text(incident)
        try:
            self.drain()
            return self._write_or_plain(item)
        except Exception as error:  # whatever failed here, the patient's answer must still leave
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
            storable.moment(item["received_at"]),
            link=public_url(),
            incident=item.get("incident") or "",
        )

    def _write_or_plain(self, item: Mapping[str, Any]) -> Change | None:
        """Writes the record; one the database refuses for what it holds is written in its plainest form."""
        try:
            return self._write(item)
        except Exception as error:
            if not _refused_as_such(error):
                raise
            log.error("escalation record refused (%s): writing its plainest form", type(error).__name__)
            return self._write(_plain(item))

    def _append(self, item: Mapping[str, Any]) -> None:
        _append_line(self.spool, json.dumps(storable.data(item)))

    @property
    def set_aside(self) -> Path:
        return self.spool.with_suffix(".bad")

    def drain(self) -> int:
        """Writes spooled records to the database, oldest first; returns how many. Raises when the
        database still refuses (the spool is then left as it was)."""
        if not self.spool.exists() or self.spool.stat().st_size == 0:
            return 0
        written = 0
        with self.spool.open("r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            lines = [line for line in handle.read().splitlines() if line.strip()]
            for line in lines:
                try:
                    item = json.loads(line)
                    if not isinstance(item, dict):
                        raise ValueError("a spool line is not a JSON object")
                except ValueError:
                    # Cut short by a crash: what can be read of it still reaches the queue, and the line
                    # itself is kept as it was.
                    log.error("damaged spool line: writing what can be read of it; copied to %s", self.set_aside)
                    _append_line(self.set_aside, line)
                    item = _salvage(line)
                try:
                    self._write_or_plain(item)
                    written += 1
                except Exception as error:
                    if not _refused_as_such(error):
                        raise
                    # Kept aside, never dropped: it names a patient who may need the care team.
                    # The error's type only: its text may quote the patient's words.
                    log.error(
                        "spooled escalation record refused (%s): set aside in %s", type(error).__name__, self.set_aside
                    )
                    _append_line(self.set_aside, line)
            handle.seek(0)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
        log.info("wrote %d spooled escalation record(s)", written)
        return written


def _append_line(path: Path, line: str) -> None:
    """Appends a line, flushed to disk, to an owner-only file (patients' words are in it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """The record with nothing left that a database could refuse: ids and words as text, a known level
    (else `unclear`), no symptoms (the message's words are there to read)."""
    triage = item.get("triage")
    level = storable.level(triage.get("level") if isinstance(triage, Mapping) else None)
    text = storable.text(item.get("text"))
    return {
        "sender_id": storable.text(item.get("sender_id")) or "unknown sender",
        "channel": storable.text(item.get("channel")) or "unknown",
        "message_id": storable.text(item.get("message_id")) or _digest(text),
        "text": text,
        "triage": {"level": level.value, "symptoms": [], "temperature": None, "stored_plain": True},
        "received_at": storable.moment(item.get("received_at")).isoformat(),
        "incident": storable.text(item.get("incident")),
    }


_FIELD = re.compile(r'"(sender_id|channel|message_id|text|received_at|incident)": "((?:[^"\\]|\\.)*)("?)')
_LEVEL = re.compile(r'"level": "([a-z_]+)"')


def _salvage(line: str) -> dict[str, Any]:
    """What can be read of a spool line cut short: its string fields (the last one perhaps cut, then
    marked so), its first level, or `unclear`."""
    fields: dict[str, str] = {}
    for name, raw, closed in _FIELD.findall(line):
        try:
            value = json.loads(f'"{raw}"')
        except ValueError:
            value = raw
        fields.setdefault(name, value if closed else f"{value} [cut short]")
    level = _LEVEL.search(line)
    return _plain(
        {
            **fields,
            "message_id": fields.get("message_id") or f"spool-{_digest(line)}",
            "triage": {"level": level.group(1) if level else Level.UNCLEAR.value},
        }
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _refused_as_such(error: Exception) -> bool:
    """Whether writing the record failed because of what it holds (a line cut short, a value too long
    for its column, a time without a zone), so that it would fail every time. A database that is down,
    locked or not yet set up fails with other errors, and the spool waits for it."""
    if isinstance(error, DBAPIError):
        return isinstance(error, DataError)
    return isinstance(error, (StatementError, ValueError, KeyError, TypeError))


@lru_cache(maxsize=1)
def default_recorder() -> Recorder:
    return Recorder()
