"""The outbox reaches a real webhook receiver on loopback: signed, retried with backoff while the
receiver is down or failing, each notification delivered exactly once. And the recorder: escalations
spooled while the database refuses them, written once when it takes them again."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import stat
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import ClientSession, web

from bot.careteam.notifier import Notifier, NotifierSettings, backoff, sign, verify
from bot.careteam.recorder import Recorder
from bot.careteam.store import EscalationStore, outbox, utcnow
from tests.postgres import free_port

SECRET = "s" * 40
FEVER = {"term": "fever", "level": "call_now", "syndromes": [], "span": "39", "reason": "fever."}
SEIZURES = {"term": "seizures", "level": "emergency", "syndromes": [], "span": "fit", "reason": "seizures."}


def triage(level: str, *symptoms: dict[str, Any]) -> dict[str, Any]:
    return {"level": level, "symptoms": list(symptoms), "temperature": None}


class Receiver:
    """A care-team webhook: checks the signature, counts what it was given per delivery id."""

    def __init__(self, secret: str = SECRET, failures: int = 0, delay_s: float = 0.0) -> None:
        self.secret = secret
        self.failures = failures  # answer 500 to this many signed requests first
        self.delay_s = delay_s
        self.requests: list[str] = []  # delivery ids, every request
        self.delivered: Counter[str] = Counter()
        self.payloads: list[dict[str, Any]] = []
        self.signatures_ok: list[bool] = []
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        delivery = request.headers["X-Triage-Delivery"]
        self.requests.append(delivery)
        ok = verify(self.secret, request.headers["X-Triage-Timestamp"], body, request.headers["X-Triage-Signature"])
        self.signatures_ok.append(ok)
        if not ok:
            return web.Response(status=401)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=500)
        payload = json.loads(body)
        assert payload["delivery_id"] == delivery
        self.delivered[delivery] += 1
        self.payloads.append(payload)
        return web.Response(status=204)

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EscalationStore]:
    store = EscalationStore(f"sqlite:///{tmp_path / 'triage.db'}")
    yield store
    store.engine.dispose()


def settings(port: int, secret: str = SECRET, **values: float) -> NotifierSettings:
    fast = {"timeout_s": 2.0, "backoff_first_s": 0.1, "backoff_max_s": 0.3, "poll_s": 0.02, **values}
    return NotifierSettings(url=f"http://127.0.0.1:{port}/hook", secret=secret, **fast)  # type: ignore[arg-type]


def outbox_rows(store: EscalationStore) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(outbox).order_by(outbox.c.id))]


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def nothing_pending(store: EscalationStore) -> bool:
    return bool((await asyncio.to_thread(store.outbox_status))["pending"] == 0)


async def run_until_delivered(store: EscalationStore, *notifiers: Notifier) -> None:
    stop = asyncio.Event()
    workers = [asyncio.create_task(notifier.run(stop)) for notifier in notifiers]
    try:
        await until(lambda: nothing_pending(store))
    finally:
        stop.set()
        await asyncio.gather(*workers)


# -- delivery ------------------------------------------------------------------------------------------


def test_notifications_wait_while_the_receiver_is_down_then_arrive_once(store: EscalationStore) -> None:
    port = free_port()  # nothing listens there yet
    store.record("p1", "sms", "m1", "fever", triage("call_now", FEVER))
    store.record("p1", "sms", "m2", "had a fit", triage("emergency", SEIZURES))  # level raised
    store.record("p2", "web", "m3", "fever", triage("call_now", FEVER))
    notifier = Notifier(store, settings(port))
    receiver = Receiver()

    async def scenario() -> None:
        async with ClientSession() as session:
            assert await notifier.deliver_due(session) == 0
            status = store.outbox_status()
            assert (status["pending"], status["delivered"], status["oldest_attempts"]) == (3, 0, 1)
            assert "Connect" in status["last_error"]
            rows = outbox_rows(store)
            assert all(row["attempts"] == 1 and row["next_attempt_at"] > utcnow() for row in rows), "backing off"
            assert await notifier.deliver_due(session) == 0
            assert [row["attempts"] for row in outbox_rows(store)] == [1, 1, 1], "not retried before the backoff"

            await asyncio.sleep(0.4)  # past the longest backoff: tried again, still down
            assert await notifier.deliver_due(session) == 0
            assert [row["attempts"] for row in outbox_rows(store)] == [2, 2, 2]

        await receiver.start(port)
        try:
            await run_until_delivered(store, notifier)
        finally:
            await receiver.stop()

    asyncio.run(scenario())
    rows = outbox_rows(store)
    assert len(rows) == 3
    assert set(receiver.delivered) == {row["delivery_id"] for row in rows}
    assert all(count == 1 for count in receiver.delivered.values()), receiver.delivered
    assert sum(receiver.delivered.values()) == len(rows)
    assert all(receiver.signatures_ok)
    # Each waited its own (jittered) backoff, so they may arrive in any order.
    assert sorted((p["patient"], p["event"]) for p in receiver.payloads) == [
        ("p1", "level_raised"),
        ("p1", "opened"),
        ("p2", "opened"),
    ]
    status = store.outbox_status()
    assert (status["pending"], status["delivered"], status["oldest_pending_at"]) == (0, 3, None)
    assert all(row["delivered_at"] is not None and row["last_error"] is None for row in rows)


def test_a_failing_receiver_gets_the_same_notification_again_until_it_answers_2xx(store: EscalationStore) -> None:
    port = free_port()
    store.record("p1", "web", "m1", "fever", triage("call_now", FEVER))
    receiver = Receiver(failures=2)
    notifier = Notifier(store, settings(port))

    async def scenario() -> None:
        await receiver.start(port)
        try:
            async with ClientSession() as session:
                assert await notifier.deliver_due(session) == 0
            assert store.outbox_status()["last_error"] == "HTTP 500"
            await run_until_delivered(store, notifier)
        finally:
            await receiver.stop()

    asyncio.run(scenario())
    [row] = outbox_rows(store)
    assert receiver.requests == [row["delivery_id"]] * 3, "retries carry the same delivery id"
    assert receiver.delivered == {row["delivery_id"]: 1}
    assert row["attempts"] == 3


def test_a_receiver_with_the_wrong_secret_refuses_every_notification(store: EscalationStore) -> None:
    port = free_port()
    store.record("p1", "web", "m1", "fever", triage("call_now", FEVER))
    receiver = Receiver(secret="another secret of forty characters......")
    notifier = Notifier(store, settings(port))

    async def scenario() -> None:
        await receiver.start(port)
        try:
            async with ClientSession() as session:
                assert await notifier.deliver_due(session) == 0
        finally:
            await receiver.stop()

    asyncio.run(scenario())
    assert receiver.signatures_ok == [False]
    assert not receiver.delivered
    status = store.outbox_status()
    assert (status["pending"], status["oldest_attempts"], status["last_error"]) == (1, 1, "HTTP 401")


def test_two_workers_deliver_each_notification_once(store: EscalationStore) -> None:
    port = free_port()
    for number in range(10):
        store.record(f"p{number}", "web", f"m{number}", "fever", triage("call_now", FEVER))
    receiver = Receiver(delay_s=0.01)
    workers = [Notifier(store, settings(port)), Notifier(store, settings(port))]

    async def scenario() -> None:
        await receiver.start(port)
        try:
            await run_until_delivered(store, *workers)
        finally:
            await receiver.stop()

    asyncio.run(scenario())
    assert len(receiver.delivered) == 10
    assert set(receiver.delivered.values()) == {1}
    assert len(receiver.requests) == 10


def test_a_claimed_batch_stays_leased_for_as_long_as_its_deliveries_may_take(store: EscalationStore) -> None:
    # Each delivery may take up to the timeout; a lease shorter than the batch would let another worker
    # take (and send again) the notifications still waiting their turn.
    port = free_port()
    for number in range(3):
        store.record(f"p{number}", "web", f"m{number}", "fever", triage("call_now", FEVER))
    timeout_s = 120.0
    notifier = Notifier(store, settings(port, timeout_s=timeout_s))
    receiver = Receiver()
    held = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        held.set()
        await asyncio.sleep(3600)
        return web.Response(status=204)

    async def scenario() -> None:
        receiver.handle = hold  # type: ignore[assignment,method-assign]
        await receiver.start(port)
        try:
            async with ClientSession() as session:
                delivering = asyncio.create_task(notifier.deliver_due(session))
                await asyncio.wait_for(held.wait(), 10)
                leases = [row["lease_until"] for row in outbox_rows(store)]
                delivering.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await delivering
        finally:
            await receiver.stop()
        assert all(lease - utcnow() > dt.timedelta(seconds=3 * timeout_s) for lease in leases), leases

    asyncio.run(scenario())


# -- signatures and backoff --------------------------------------------------------------------------


def test_the_signature_covers_the_secret_the_timestamp_and_the_body() -> None:
    body = b'{"event": "opened"}'
    now = str(int(time.time()))
    signature = sign(SECRET, now, body)
    assert signature.startswith("sha256=") and verify(SECRET, now, body, signature)
    assert not verify("x" + SECRET[1:], now, body, signature), "another secret"
    assert not verify(SECRET, now, body + b" ", signature), "another body"
    assert not verify(SECRET, str(int(now) + 1), body, signature), "another timestamp"
    old = str(int(time.time()) - 301)
    assert not verify(SECRET, old, body, sign(SECRET, old, body)), "too old: a replay"
    for timestamp in ("", "soon", "nan", "inf"):
        assert not verify(SECRET, timestamp, body, sign(SECRET, timestamp, body))
    for garbage in ("", "sha256=", "sha256=é", "sha256=\udcff", signature.upper()):
        assert not verify(SECRET, now, body, garbage)


def test_backoff_doubles_from_the_first_wait_up_to_the_cap_with_jitter() -> None:
    values = NotifierSettings(url="http://127.0.0.1/", secret=SECRET, backoff_first_s=2.0, backoff_max_s=300.0)
    for attempts, base in ((1, 2), (2, 4), (3, 8), (8, 256), (9, 300), (50, 300)):
        assert all(0.8 * base <= backoff(attempts, values) <= 1.2 * base for _ in range(20))


@pytest.mark.parametrize(
    ("environment", "error"),
    [
        ({}, None),
        ({"TRIAGE_NOTIFY_URL": "https://pager.example/hook", "TRIAGE_NOTIFY_SECRET": "short"}, "at least 32"),
        ({"TRIAGE_NOTIFY_URL": "ftp://pager.example/hook", "TRIAGE_NOTIFY_SECRET": SECRET}, "http"),
    ],
)
def test_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], error: str | None
) -> None:
    monkeypatch.delenv("TRIAGE_NOTIFY_URL", raising=False)
    monkeypatch.delenv("TRIAGE_NOTIFY_SECRET", raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    if error is None:
        assert NotifierSettings.from_env() is None
    else:
        with pytest.raises(ValueError, match=error):
            NotifierSettings.from_env()


# -- the recorder ------------------------------------------------------------------------------------


class Database:
    """An SQLite database that can be made unusable: its path taken by a folder, where no file can open."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "triage.db"
        self.url = f"sqlite:///{self.path}"
        self.opened: list[EscalationStore] = []

    def break_(self) -> None:
        self.path.mkdir()

    def repair(self) -> None:
        self.path.rmdir()

    def store(self) -> EscalationStore:
        store = EscalationStore(self.url)
        self.opened.append(store)
        return store

    def messages(self) -> list[str]:
        store = EscalationStore(self.url)
        try:
            return [m["message_id"] for e in store.queue() for m in store.messages(e.id)]
        finally:
            store.engine.dispose()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path)
    yield database
    for store in database.opened:
        store.engine.dispose()


def spooled(recorder: Recorder) -> list[str]:
    lines = recorder.spool.read_text().splitlines() if recorder.spool.exists() else []
    return [json.loads(line)["message_id"] for line in lines]


def test_the_recorder_spools_while_the_database_refuses_and_writes_once_later(
    database: Database, tmp_path: Path
) -> None:
    database.break_()
    recorder = Recorder(database.store, spool=tmp_path / "spool")
    now = utcnow()
    assert recorder.record("p1", "sms", "m1", "fever", triage("call_now", FEVER), now) is None
    assert recorder.record("p1", "sms", "m2", "had a fit", triage("emergency", SEIZURES), now) is None
    assert recorder.record("p2", "sms", "m3", "a bit tired", triage("mention"), now) is None
    assert spooled(recorder) == ["m1", "m2"], "escalations only"
    assert stat.S_IMODE(recorder.spool.stat().st_mode) == 0o600
    with pytest.raises(sa.exc.OperationalError):
        recorder.drain()
    assert spooled(recorder) == ["m1", "m2"], "kept while the database still refuses"

    database.repair()
    assert recorder.drain() == 2
    assert recorder.drain() == 0
    assert spooled(recorder) == []
    assert sorted(database.messages()) == ["m1", "m2"]
    [escalation] = recorder.store().queue()
    assert (escalation.level, escalation.message_count) == ("emergency", 2)
    assert recorder.store().outbox_status()["pending"] == 2, "opened, level raised: nothing twice"


def test_the_next_escalation_writes_the_spool_first(database: Database, tmp_path: Path) -> None:
    database.break_()
    recorder = Recorder(database.store, spool=tmp_path / "spool")
    recorder.record("p1", "web", "m1", "fever", triage("call_now", FEVER), utcnow() - dt.timedelta(minutes=5))
    database.repair()
    change = recorder.record("p1", "web", "m2", "had a fit", triage("emergency", SEIZURES), utcnow())
    assert change is not None and change.escalation.message_count == 2
    assert change.event == "level_raised", "m1 opened it before m2 arrived"
    assert spooled(recorder) == []


def test_a_spool_written_but_not_emptied_is_not_written_twice(database: Database, tmp_path: Path) -> None:
    # As after a crash between writing the spooled records and emptying the spool.
    database.break_()
    recorder = Recorder(database.store, spool=tmp_path / "spool")
    recorder.record("p1", "web", "m1", "fever", triage("call_now", FEVER), utcnow())
    saved = recorder.spool.read_bytes()
    database.repair()
    assert recorder.drain() == 1
    recorder.spool.write_bytes(saved)
    recorder.drain()
    [escalation] = recorder.store().queue()
    assert escalation.message_count == 1
    assert recorder.store().outbox_status()["pending"] == 1


def test_a_cut_short_spool_line_reaches_the_queue_as_far_as_it_can_be_read(database: Database, tmp_path: Path) -> None:
    database.break_()
    recorder = Recorder(database.store, spool=tmp_path / "spool")
    recorder.record("p1", "web", "m1", "my fever", triage("call_now", FEVER), utcnow())
    with recorder.spool.open("a") as spool:
        spool.write('{"sender_id": "p2", "text": "my secret wor')
    database.repair()
    assert recorder.drain() == 2
    [salvaged] = [e for e in recorder.store().queue() if e.sender_id == "p2"]
    assert salvaged.level == "unclear", "a person reads what could not be triaged again"
    [message] = recorder.store().messages(salvaged.id)
    assert message["text"] == "my secret wor [cut short]"
    set_aside = recorder.spool.with_suffix(".bad")
    assert "my secret wor" in set_aside.read_text(), "the damaged line itself is kept as it was"
    assert stat.S_IMODE(set_aside.stat().st_mode) == 0o600, "patients' words: owner only"


def test_a_record_with_a_time_without_a_zone_is_written_as_utc_not_set_aside(
    database: Database, tmp_path: Path
) -> None:
    # Such records used to be refused by the store and set aside in escalations.bad, off the queue.
    recorder = Recorder(database.store, spool=tmp_path / "spool")
    assert recorder.record("p1", "web", "m1", "fever", triage("call_now", FEVER), utcnow()) is not None
    naive = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert recorder.record("p1", "web", "m2", "had a fit", triage("emergency", SEIZURES), naive) is not None
    assert recorder.record("p2", "web", "m3", "fever", triage("call_now", FEVER), naive) is not None
    assert sorted(database.messages()) == ["m1", "m2", "m3"]
    assert spooled(recorder) == []
    assert not recorder.spool.with_suffix(".bad").exists()


def test_the_spool_is_owner_only_whatever_the_umask(database: Database, tmp_path: Path) -> None:
    database.break_()
    recorder = Recorder(database.store, spool=tmp_path / "new" / "spool")
    old_umask = os.umask(0)
    try:
        recorder.record("p1", "web", "m1", "fever", triage("call_now", FEVER), utcnow())
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(recorder.spool.stat().st_mode) == 0o600
