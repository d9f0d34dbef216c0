"""The conversation store: Rasa's SQL tracker store, reading a bounded window of each conversation and
appending only new events, with SQLite set up for a server.

**A turn costs the same at turn 300 as at turn 1.** Rasa 3.6's store reads, deserialises and replays
every event of the session on each message, writes by counting the stored events first, and Rasa then
replays the tracker again for each action and sends all of it to the action server: one sender's turn
took 48 ms at turn 1 and 293 ms at turn 290 (issue 6). This store reads instead:

- the events of the last `TRIAGE_TRACKER_TURNS` (3) turns, from the `action_listen` before the third
  last message on, or of the whole session when it is shorter (never from before its `session_started`).
  The dialogue policy here is rules over the latest turn (no stories, no MemoizationPolicy), so it
  decides the same on the window as on the whole session (tests/test_turn_cost.py
  compares a long conversation both ways). A rule with `conversation_start: true`, or a story that
  needs more turns than the window holds, would need a larger setting;
- before them, the state the earlier events of the session left: the latest `slot` event of each slot
  (after the latest `reset_slots`), the latest `active_loop` event, and the later of the latest
  `pause`/`resume`, none of them from before a `restart`. They are real stored events, replayed first,
  so the slots (`symptom_history`: "earlier you told me about ...") are exactly those of the whole
  session, also when an event later resets the tracker and replays it (UserUtteranceReverted).

Saving appends the tracker's events past those it was read with (or last saved), without counting the
stored ones. A tracker this store did not read (a new conversation) is saved as Rasa does. A save
retried after a commit whose answer was lost does not store its events twice. Every event is kept:
`retrieve_full_tracker`, the care team's transcript and the load test's checks read the whole history.

Indexes: (sender_id, type_name, action_name, id) answers the window's bounds and each state event with
one seek; (sender_id, id) reads the window. Both are created if missing (on a large existing PostgreSQL
table, create them beforehand, CONCURRENTLY). The queries are SQL text made once: building SQLAlchemy
expressions of a dozen subqueries on every read cost more than running them.

On SQLite (the default database) the store keeps its connections open (a pool), and each uses
write-ahead logging, so that a reader never blocks the writer, waits up to `TRIAGE_SQLITE_BUSY_MS` for a
lock instead of failing at once, and keeps `synchronous=FULL`: a message the patient sent is on disk
before the reply goes out. Other databases (PostgreSQL) are used as Rasa configures them.

A save or a read that fails because the database is locked or unreachable is retried with backoff
for up to `TRIAGE_DB_RETRY_S` (30) seconds before Rasa's fallback takes over (which would keep the
turn in this process's memory only, and start a reader's conversation afresh): a database that is
briefly unavailable delays the reply, it does not lose the conversation.

`TRIAGE_DB_URL`, when set, names the database for this store as for the rest of the project
(bot/database.py), overriding endpoints.yml's dialect and db: one setting moves everything.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import Event, deserialise_events
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY
from rasa.shared.utils.common import all_subclasses
from sqlalchemy.exc import InterfaceError, OperationalError

from bot.database import sqlite_pragmas

RETRY_S = float(os.environ.get("TRIAGE_DB_RETRY_S", "30"))
#: Open SQLite connections kept by the store (its reads and saves run one at a time, on the event loop).
SQLITE_POOL_SIZE = 2
#: Complete turns of a conversation read for each message (see the module docstring); at least 1, so
#: that the latest message and its answer are always in the window.
TRACKER_TURNS = max(1, int(os.environ.get("TRIAGE_TRACKER_TURNS", "3")))

#: Stored event types (Rasa's `type_name`) whose latest occurrence before the window sets the tracker's
#: state: slots, the active loop, pause and resume; resets and restarts bound which of them count.
SLOT, LOOP, PAUSE, RESUME, RESET_SLOTS, RESTART = "slot", "active_loop", "pause", "resume", "reset_slots", "restart"
SESSION_STARTED = "session_started"
#: The indexes the window's queries use (see the module docstring), by name.
INDEXES = {
    "ix_events_sender_type_action_id": "sender_id, type_name, action_name, id",
    "ix_events_sender_id_id": "sender_id, id",
}
LISTEN = "action_listen"

logger = logging.getLogger(__name__)
Result = TypeVar("Result")


@dataclass(frozen=True)
class _Stored:
    """What a tracker held of the database when this store last read or saved it: its first `count`
    events, the last of which is row `last_id` (0: none)."""

    count: int
    last_id: int


@dataclass(frozen=True)
class _Queries:
    """The store's reading queries for one domain's slots and loops (parameters: sender, turns, start,
    lower, ids). Every condition is an equality on the index's leading columns (an active loop's and a
    slot's events name it in action_name; the others have none) followed by a range on id, so that each
    latest row is one seek: SQLite otherwise walks the sender's rows back from the newest."""

    names: tuple[tuple[str, ...], tuple[str, ...]]
    bounds: sa.sql.elements.TextClause
    window: sa.sql.elements.TextClause
    state: sa.sql.elements.TextClause
    state_params: dict[str, str]
    rows: sa.sql.elements.TextClause
    #: For saving: the rows stored after a given one, and the conversation's last row.
    stored_after: sa.sql.elements.TextClause
    last: sa.sql.elements.TextClause

    @classmethod
    def for_domain(cls, table: str, slots: tuple[str, ...], loops: tuple[str, ...]) -> _Queries:
        mine = f"FROM {table} WHERE sender_id = :sender"
        bounds = sa.text(
            f"SELECT (SELECT max(id) {mine} AND type_name = '{SESSION_STARTED}' AND action_name IS NULL), "
            f"(SELECT id {mine} AND type_name = 'action' AND action_name = '{LISTEN}' "
            "ORDER BY id DESC LIMIT 1 OFFSET :turns)"  # the latest listen ends the latest turn: `turns` back
        )
        window = sa.text(f"SELECT id, data {mine} AND id >= :start ORDER BY id")
        # A slot event's action_name is the slot's name; pause, resume, reset and restart have none; an
        # active_loop event names its loop (none: the loop ended), and the latest of them counts.
        before = f"{mine} AND id >= :lower AND id < :start AND type_name = "
        latest = [f"(SELECT max(id) {before}'{SLOT}' AND action_name = :slot_{n})" for n in range(len(slots))]
        latest += [f"(SELECT max(id) {before}'{kind}' AND action_name IS NULL)" for kind in (PAUSE, RESUME)]
        latest += [f"(SELECT max(id) {before}'{kind}' AND action_name IS NULL)" for kind in (RESET_SLOTS, RESTART)]
        latest += [f"(SELECT max(id) {before}'{LOOP}' AND action_name = :loop_{n})" for n in range(len(loops))]
        latest.append(f"(SELECT max(id) {before}'{LOOP}' AND action_name IS NULL)")
        rows = sa.text(f"SELECT id, type_name, data FROM {table} WHERE id IN :ids ORDER BY id").bindparams(
            sa.bindparam("ids", expanding=True)
        )
        params = {f"slot_{n}": name for n, name in enumerate(slots)}
        params.update({f"loop_{n}": name for n, name in enumerate(loops)})
        stored_after = sa.text(f"SELECT type_name, timestamp {mine} AND id > :last ORDER BY id")
        last = sa.text(f"SELECT max(id) {mine}")
        return cls(
            (slots, loops), bounds, window, sa.text("SELECT " + ", ".join(latest)), params, rows, stored_after, last
        )


#: The attribute a tracker read or saved by this store carries (Rasa hands the same object back to save).
_MARK = "_triage_stored"


class TriageSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        url = os.environ.get("TRIAGE_DB_URL", "").strip()
        if url:
            parsed = sa.engine.make_url(url)
            kwargs.update(
                dialect=parsed.drivername,
                host=parsed.host,
                port=parsed.port,
                db=parsed.database,
                username=parsed.username,
                password=parsed.password,
            )
        self.turns = int(kwargs.pop("turns", TRACKER_TURNS))
        self._queries: _Queries | None = None
        super().__init__(*args, **kwargs)
        self.engine: sa.engine.Engine  # set by Rasa's __init__ (untyped there)
        if self.engine.dialect.name == "sqlite":
            # SQLAlchemy 1.4 opens a new connection for every session on an SQLite file (NullPool): the
            # pragmas ran again each time, and closing the last connection to the database checkpointed
            # the write-ahead log into it (more fsyncs), on every read and every save. A pool keeps a
            # few open; the log is checkpointed as SQLite does by itself (every 1000 pages).
            url = self.engine.url
            self.engine.dispose()
            self.engine = sa.create_engine(
                url, poolclass=sa.pool.QueuePool, pool_size=SQLITE_POOL_SIZE, connect_args={"check_same_thread": False}
            )
            sa.event.listen(self.engine, "connect", sqlite_pragmas)
            self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
        self._create_indexes()

    def _create_indexes(self) -> None:
        # As DDL of its own: an sa.Index would attach itself to Rasa's shared table definition, and the
        # next store's create_all would then create it a second time.
        with self.engine.begin() as connection:
            for name, columns in INDEXES.items():
                connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON events ({columns})")

    async def save(self, tracker: DialogueStateTracker) -> None:
        await _retrying(lambda: self._save(tracker), "save", tracker.sender_id)

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        return await _retrying(lambda: self._retrieve_window(sender_id), "read", sender_id)

    # -- reading -------------------------------------------------------------------------------------

    async def _retrieve_window(self, sender_id: str) -> DialogueStateTracker | None:
        sql = self._sql()
        with self.engine.connect() as connection:
            session_start, turns_start = connection.execute(
                sql.bounds, {"sender": sender_id, "turns": self.turns}
            ).one()
            session_start = int(session_start or 0)
            start = max(session_start, int(turns_start or 0))
            rows = connection.execute(sql.window, {"sender": sender_id, "start": start}).all()
            if not rows:
                return None
            state = self._state_before(connection, sender_id, session_start, start) if start > session_start else []
        events_read = _deserialise([json.loads(data) for _, data in (*state, *rows)])
        tracker = DialogueStateTracker.from_events(sender_id, events_read, self.domain.slots)
        setattr(tracker, _MARK, _Stored(count=len(tracker.events), last_id=int(rows[-1][0])))
        return tracker

    def _state_before(
        self, connection: sa.engine.Connection, sender_id: str, session_start: int, start: int
    ) -> list[tuple[int, str]]:
        """The stored events, in order, that carry the state rows session_start..start-1 left: the latest
        row of each slot of the domain, of the active loop, of pause and resume, of reset and restart. Each
        is one seek in the (sender_id, type_name, action_name, id) index, however long the session."""
        sql = self._sql()
        bounds = {"sender": sender_id, "lower": session_start, "start": start, **sql.state_params}
        found = [int(i) for i in connection.execute(sql.state, bounds).one() if i is not None]
        if not found:
            return []
        rows = connection.execute(sql.rows, {"ids": found}).all()
        return [(int(row_id), data) for row_id, data in _state_events([(int(i), str(k), d) for i, k, d in rows])]

    def _sql(self) -> _Queries:
        """The reading queries, as SQL text made once per set of slots and loops (Rasa sets the domain after the
        store is made): building and caching SQLAlchemy expressions of a dozen subqueries on every read
        cost more than running them."""
        names = (tuple(slot.name for slot in self.domain.slots), tuple(self.domain.form_names))
        if self._queries is None or self._queries.names != names:
            self._queries = _Queries.for_domain(self.SQLEvent.__tablename__, *names)
        return self._queries

    # -- writing -------------------------------------------------------------------------------------

    async def _save(self, tracker: DialogueStateTracker) -> None:
        await self.stream_events(tracker)
        stored: _Stored | None = getattr(tracker, _MARK, None)
        sql = self._sql()
        with self.session_scope() as session:
            if stored is None:
                # Not read by this store (a new conversation): Rasa's way, counting the session's events.
                new = list(self._additional_events(session, tracker))
            else:
                new = list(itertools.islice(tracker.events, stored.count, None))
                already = session.execute(sql.stored_after, {"sender": tracker.sender_id, "last": stored.last_id}).all()
                new = _unsaved(new, [(str(kind), stamp) for kind, stamp in already], tracker.sender_id)
            rows = [self._row(tracker.sender_id, event) for event in new]
            session.add_all(rows)
            session.flush()
            last_id = rows[-1].id if rows else None
            if last_id is None:
                last_id = session.execute(sql.last, {"sender": tracker.sender_id}).scalar()
            session.commit()
        setattr(tracker, _MARK, _Stored(count=len(tracker.events), last_id=int(last_id or 0)))
        logger.debug("conversation %s: %d new events stored", tracker.sender_id, len(rows))

    def _row(self, sender_id: str, event: Event) -> Any:
        data = event.as_dict()
        return self.SQLEvent(
            sender_id=sender_id,
            type_name=event.type_name,
            timestamp=data.get("timestamp"),
            intent_name=data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
            action_name=data.get("name"),
            data=json.dumps(data),
        )


@functools.lru_cache(maxsize=1)
def _event_types() -> dict[str, type[Event]]:
    """Rasa's event classes by type name: the first of `all_subclasses(Event)` for each name, as Rasa's
    `Event.resolve_by_type` finds it, which walks every subclass again for every event it reads."""
    types: dict[str, type[Event]] = {}
    for cls in all_subclasses(Event):
        types.setdefault(cls.type_name, cls)
    return types


def _deserialise(dumped: list[dict[str, Any]]) -> list[Event]:
    """Rasa's `deserialise_events`, with the event classes looked up once; anything unusual (an unknown
    type, a row without one) goes through Rasa's own function, which warns about it."""
    types = _event_types()
    events: list[Event] = []
    for data in dumped:
        cls = types.get(data.get("event", ""))
        event = cls._from_parameters(data) if cls is not None else None
        events.extend([event] if event is not None else deserialise_events([data]))
    return events


def _state_events(rows: Iterable[tuple[int, str, str]]) -> list[tuple[int, str]]:
    """Of the latest state event of each kind (and of each slot), those still in force: none before the
    latest restart, no slot before the latest reset of all slots, only the later of pause and resume,
    only the latest active loop. The restart and the reset themselves are not needed."""
    rows = list(rows)
    restart = max((i for i, kind, _ in rows if kind == RESTART), default=-1)
    reset = max((i for i, kind, _ in rows if kind == RESET_SLOTS), default=-1)
    loop = max((i for i, kind, _ in rows if kind == LOOP), default=-1)
    paused = max((i for i, kind, _ in rows if kind in (PAUSE, RESUME)), default=-1)
    keep = []
    for row_id, kind, data in rows:
        if row_id < restart or kind in (RESTART, RESET_SLOTS):
            continue
        if (kind == SLOT and row_id > reset) or (kind == LOOP and row_id == loop) or row_id == paused:
            keep.append((row_id, data))
    return keep


def _unsaved(new: list[Event], already: list[tuple[str, float | None]], sender_id: str) -> list[Event]:
    """The events of `new` not yet stored. Rows stored after the tracker was read are the first of `new`
    when an earlier attempt of this save committed but its answer was lost: those are skipped. Rows of
    anything else (a writer that did not hold the conversation's lock) are kept, and ours go after them."""
    if not already:
        return new
    ours = [(event.type_name, event.timestamp) for event in new[: len(already)]]
    if ours == already:
        return new[len(already) :]
    logger.warning("conversation %s: %d events were stored by another writer meanwhile", sender_id, len(already))
    return new


async def _retrying(call: Callable[[], Awaitable[Result]], what: str, sender_id: str) -> Result:
    deadline = time.monotonic() + RETRY_S
    delay = 0.2
    while True:
        try:
            return await call()
        except (OperationalError, InterfaceError) as error:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning(
                "conversation %s of %s failed (%s); retrying in %.1f s", what, sender_id, type(error).__name__, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
