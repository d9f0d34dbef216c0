"""The escalation store on SQLite and on PostgreSQL: one escalation per patient episode, each message
once, the care team's status changes, the queue's order and filters, and the outbox."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.careteam.store import Escalation, EscalationError, EscalationStore, Query, outbox, utcnow
from tests.postgres import Server, fresh_database

NOW = utcnow()
FEVER_REASON = (
    "'39' is 39.0 °C. This is a fever (38.0 °C / 100.4 °F or higher). The term is 'fever': the monograph lists it "
    "among the more common side effects to check with your doctor about immediately."
)


def symptom(term: str, level: str, span: str = "", reason: str = "") -> dict[str, Any]:
    return {"term": term, "level": level, "syndromes": [], "span": span or term, "reason": reason or f"{term}."}


def triage(level: str, *symptoms: dict[str, Any]) -> dict[str, Any]:
    return {"level": level, "symptoms": list(symptoms), "temperature": None}


def ago(minutes: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes)


FEVER = symptom("fever", "call_now", "39", FEVER_REASON)
SEIZURES = symptom("seizures", "emergency", "fit")
HEADACHE = symptom("headache", "call_now")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'triage.db'}"
    server: Server = request.getfixturevalue("postgres_server")
    return fresh_database(server)


@pytest.fixture
def store(database_url: str) -> Iterator[EscalationStore]:
    store = EscalationStore(database_url)
    yield store
    store.engine.dispose()


def outbox_rows(store: EscalationStore) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(outbox).order_by(outbox.c.id))]


def together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Runs `work(0)` ... `work(count - 1)` in threads released at the same moment; returns each
    result or the exception it raised."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = work(index)
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# -- one escalation per episode ----------------------------------------------------------------------


def test_messages_from_one_sender_make_one_escalation_at_the_worst_level(store: EscalationStore) -> None:
    first = store.record("p1", "sms", "m1", "not sure, feel odd", triage("unclear"), ago(30))
    second = store.record("p1", "sms", "m2", "fever 39", triage("call_now", FEVER), ago(20))
    third = store.record("p1", "sms", "m3", "had a fit, still hot", triage("emergency", SEIZURES, FEVER), ago(10))
    assert first and second and third
    assert [first.event, second.event, third.event] == ["opened", "level_raised", "level_raised"]
    assert first.escalation.id == second.escalation.id == third.escalation.id

    [escalation] = store.queue()
    assert escalation.level == "emergency"
    assert escalation.terms == ["seizures", "fever"]
    assert escalation.message_count == 3
    assert (escalation.first_message_at, escalation.last_message_at) == (ago(30), ago(10))
    assert [m["message_id"] for m in store.messages(escalation.id)] == ["m1", "m2", "m3"]
    assert [row["event"] for row in outbox_rows(store)] == ["opened", "level_raised", "level_raised"]


def test_a_symptom_reported_again_keeps_its_worst_level_and_first_report(store: EscalationStore) -> None:
    store.record("p1", "web", "m1", "headache", triage("call_now", HEADACHE), ago(30))
    worse = symptom("headache", "emergency", "worst headache of my life")
    change = store.record("p1", "web", "m2", "worst headache of my life", triage("emergency", worse), ago(5))
    assert change is not None
    [headache] = change.escalation.symptoms
    assert headache["level"] == "emergency"
    assert headache["span"] == "worst headache of my life"
    assert headache["first_reported_at"] == ago(30).isoformat()


def test_a_same_level_message_adds_to_the_escalation_without_a_notification(store: EscalationStore) -> None:
    store.record("p1", "web", "m1", "fever", triage("call_now", FEVER))
    change = store.record("p1", "web", "m2", "headache too", triage("call_now", HEADACHE))
    assert change is not None and change.event is None and change.recorded
    assert change.escalation.terms == ["fever", "headache"]
    assert len(outbox_rows(store)) == 1


def test_a_message_that_arrives_late_keeps_the_times_in_order(store: EscalationStore) -> None:
    # A message spooled while the database was down reaches it after a later one.
    store.record("p1", "web", "m2", "fever", triage("call_now", FEVER), ago(5))
    change = store.record("p1", "web", "m1", "headache", triage("call_now", HEADACHE), ago(50))
    assert change is not None
    assert (change.escalation.first_message_at, change.escalation.last_message_at) == (ago(50), ago(5))
    assert [m["message_id"] for m in store.messages(change.escalation.id)] == ["m1", "m2"]


def test_lower_level_messages_never_lower_the_escalation(store: EscalationStore) -> None:
    store.record("p1", "web", "m1", "had a fit", triage("emergency", SEIZURES))
    change = store.record("p1", "web", "m2", "bit confused", triage("unclear"))
    assert change is not None and change.escalation.level == "emergency" and change.event is None


@pytest.mark.parametrize("level", ["mention", "none"])
def test_mention_and_none_outcomes_record_nothing(store: EscalationStore, level: str) -> None:
    assert store.record("p1", "web", "m1", "a bit tired", triage(level, symptom("tiredness", "mention"))) is None
    assert store.queue(Query(status="all")) == []
    assert store.outbox_status()["pending"] == 0


def test_the_same_message_twice_is_recorded_once(store: EscalationStore) -> None:
    first = store.record("p1", "sms", "m1", "fever", triage("call_now", FEVER))
    again = store.record("p1", "sms", "m1", "fever", triage("call_now", FEVER))
    assert first is not None and again is not None
    assert (first.recorded, again.recorded) == (True, False)
    assert again.event is None and again.escalation.id == first.escalation.id
    assert store.get(first.escalation.id).message_count == 1
    assert len(store.messages(first.escalation.id)) == 1
    assert len(outbox_rows(store)) == 1


def test_separate_senders_get_separate_escalations(store: EscalationStore) -> None:
    store.record("p1", "web", "m1", "fever", triage("call_now", FEVER))
    store.record("p2", "sms", "m2", "fever", triage("call_now", FEVER))
    assert sorted(e.sender_id for e in store.queue()) == ["p1", "p2"]


# -- the care team's changes -------------------------------------------------------------------------


def test_a_new_message_reopens_an_acknowledged_escalation(store: EscalationStore) -> None:
    opened = store.record("p1", "web", "m1", "fever", triage("call_now", FEVER), ago(20))
    assert opened is not None
    acknowledged = store.acknowledge(opened.escalation.id, "nurse")
    assert (acknowledged.status, acknowledged.acknowledged_by) == ("acknowledged", "nurse")
    with pytest.raises(EscalationError, match="already acknowledged"):
        store.acknowledge(opened.escalation.id, "doctor")

    reopened = store.record("p1", "web", "m2", "still hot", triage("call_now", FEVER), ago(5))
    assert reopened is not None and reopened.event == "reopened"
    assert reopened.escalation.status == "new"
    assert reopened.escalation.waiting_since == ago(5)
    events = outbox_rows(store)
    assert [row["event"] for row in events] == ["opened", "reopened"]
    assert json.loads(events[-1]["payload"])["status"] == "new"
    assert [e["kind"] for e in store.history(opened.escalation.id)] == ["opened", "acknowledged", "reopened"]


def test_resolving_needs_a_note_and_closes_the_episode(store: EscalationStore) -> None:
    opened = store.record("p1", "sms", "m1", "fever", triage("call_now", FEVER))
    assert opened is not None
    escalation_id = opened.escalation.id
    for note in ("", "   "):
        with pytest.raises(EscalationError, match="note is required"):
            store.resolve(escalation_id, "nurse", note)
    resolved = store.resolve(escalation_id, "nurse", "Called back: paracetamol, fever clinic at 3pm.")
    assert resolved.status == "resolved" and resolved.resolved_by == "nurse"
    assert resolved.acknowledged_by == "nurse", "resolving also acknowledges"
    with pytest.raises(EscalationError, match="already resolved"):
        store.resolve(escalation_id, "doctor", "again")
    with pytest.raises(EscalationError, match="already resolved"):
        store.acknowledge(escalation_id, "doctor")

    next_episode = store.record("p1", "sms", "m2", "fever again", triage("call_now", FEVER))
    assert next_episode is not None and next_episode.event == "opened"
    assert next_episode.escalation.id != escalation_id
    assert store.get(escalation_id).message_count == 1
    assert [e.id for e in store.queue()] == [next_episode.escalation.id]
    history = store.history(escalation_id)
    assert [(e["kind"], e["note"]) for e in history][-1] == (
        "resolved",
        "Called back: paracetamol, fever clinic at 3pm.",
    )


def test_notes_are_kept_and_empty_ones_refused(store: EscalationStore) -> None:
    opened = store.record("p1", "web", "m1", "fever", triage("call_now", FEVER))
    assert opened is not None
    with pytest.raises(EscalationError, match="empty"):
        store.add_note(opened.escalation.id, "nurse", "  ")
    store.add_note(opened.escalation.id, "nurse", " Left a voicemail. ")
    assert [(e["actor"], e["kind"], e["note"]) for e in store.history(opened.escalation.id)][-1] == (
        "nurse",
        "note",
        "Left a voicemail.",
    )


def test_unknown_escalations_are_refused(store: EscalationStore) -> None:
    for change in (store.get, lambda i: store.acknowledge(i, "nurse"), lambda i: store.add_note(i, "nurse", "x")):
        with pytest.raises(EscalationError, match="no escalation 404"):
            change(404)


def resolve_as(store: EscalationStore, escalation_id: int, clinician: int) -> Escalation:
    return store.resolve(escalation_id, f"clinician{clinician}", f"called back by clinician {clinician}")


def test_two_clinicians_resolving_at_once_one_wins(store: EscalationStore) -> None:
    for round_ in range(5):
        opened = store.record(f"p{round_}", "web", f"m{round_}", "fever", triage("call_now", FEVER))
        assert opened is not None
        results = together(2, functools.partial(resolve_as, store, opened.escalation.id))
        winners = [r for r in results if not isinstance(r, Exception)]
        losers = [r for r in results if isinstance(r, Exception)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert isinstance(losers[0], EscalationError)
        final = store.get(opened.escalation.id)
        assert final.status == "resolved" and final.resolved_by == winners[0].resolved_by
        assert [e["kind"] for e in store.history(final.id)].count("resolved") == 1


# -- concurrent messages -----------------------------------------------------------------------------


def test_concurrent_messages_from_one_sender_make_one_escalation_with_every_message(store: EscalationStore) -> None:
    threads, per_thread = 6, 5
    levels = {0: ("emergency", SEIZURES), 1: ("call_now", FEVER), 2: ("unclear", None)}

    def send(thread: int) -> None:
        for number in range(per_thread):
            level, found = levels[(thread + number) % 3]
            term = symptom(f"term-{thread}-{number}", level) if found else None
            symptoms = [s for s in (found, term) if s]
            store.record("p1", "sms", f"m{thread}-{number}", f"message {thread}-{number}", triage(level, *symptoms))

    results = together(threads, send)
    assert not [r for r in results if isinstance(r, Exception)], results

    escalations = store.queue(Query(status="all"))
    assert len(escalations) == 1
    [escalation] = escalations
    assert escalation.status == "new" and escalation.level == "emergency"
    assert escalation.message_count == threads * per_thread
    ids = [m["message_id"] for m in store.messages(escalation.id)]
    assert sorted(ids) == sorted(f"m{t}-{n}" for t in range(threads) for n in range(per_thread))
    named = {f"term-{t}-{n}" for t in range(threads) for n in range(per_thread) if (t + n) % 3 != 2}
    assert set(escalation.terms) == {"seizures", "fever"} | named
    assert escalation.terms[0] == "seizures", "worst first"


def test_the_same_message_from_several_threads_is_recorded_once(store: EscalationStore) -> None:
    results = together(4, lambda i: store.record("p1", "web", "m1", "fever", triage("call_now", FEVER)))
    assert sorted(r.recorded for r in results) == [False, False, False, True], results
    [escalation] = store.queue()
    assert escalation.message_count == 1
    assert len(outbox_rows(store)) == 1


# -- the queue -----------------------------------------------------------------------------------------


def test_queue_puts_emergencies_first_then_the_longest_waiting(store: EscalationStore) -> None:
    # Recorded in this order, received at these times (a spooled message arrives late, for example).
    store.record("call-30", "web", "m1", "fever", triage("call_now", FEVER), ago(30))
    store.record("emergency-5", "web", "m2", "had a fit", triage("emergency", SEIZURES), ago(5))
    store.record("unclear-60", "sms", "m3", "feel odd", triage("unclear"), ago(60))
    store.record("emergency-20", "sms", "m4", "had a fit", triage("emergency", SEIZURES), ago(20))
    done = store.record("resolved-90", "web", "m5", "fever", triage("call_now", FEVER), ago(90))
    assert done is not None
    store.resolve(done.escalation.id, "nurse", "seen in clinic")

    assert [e.sender_id for e in store.queue()] == ["emergency-20", "emergency-5", "unclear-60", "call-30"]
    assert [e.sender_id for e in store.queue(Query(status="all"))][-1] == "resolved-90"
    assert [e.sender_id for e in store.queue(Query(limit=2))] == ["emergency-20", "emergency-5"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EscalationStore]:
    """One queue for all the filter cases (they only read it)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('filters') / 'triage.db'}"
    else:
        url = fresh_database(request.getfixturevalue("postgres_server"))
    store = EscalationStore(url)
    store.record("sms:+15550001", "sms", "m1", "I have a fever of 39", triage("call_now", FEVER))
    store.record("web-ward_7", "web", "m2", "had a fit this morning", triage("emergency", SEIZURES))
    store.record("web-ward17", "web", "m3", "100% sure my head is splitting", triage("call_now", HEADACHE))
    acknowledged = store.record("sms:+15550002", "sms", "m4", "feel strange", triage("unclear"))
    resolved = store.record("sms:+15550003", "sms", "m5", "headache again", triage("call_now", HEADACHE))
    assert acknowledged is not None and resolved is not None
    store.acknowledge(acknowledged.escalation.id, "nurse")
    store.resolve(resolved.escalation.id, "nurse", "called back")
    yield store
    store.engine.dispose()


@pytest.mark.parametrize(
    ("query", "senders"),
    [
        (Query(), {"sms:+15550001", "web-ward_7", "web-ward17", "sms:+15550002"}),
        (Query(status="new"), {"sms:+15550001", "web-ward_7", "web-ward17"}),
        (Query(status="acknowledged"), {"sms:+15550002"}),
        (Query(status="resolved"), {"sms:+15550003"}),
        (Query(status="all", level="call_now"), {"sms:+15550001", "web-ward17", "sms:+15550003"}),
        (Query(level="emergency"), {"web-ward_7"}),
        (Query(channel="sms"), {"sms:+15550001", "sms:+15550002"}),
        (Query(channel="web", level="call_now"), {"web-ward17"}),
        # the patient id, a symptom term, the message text; any case
        (Query(search="5550002"), {"sms:+15550002"}),
        (Query(search="SEIZ"), {"web-ward_7"}),
        (Query(status="all", search="headache"), {"web-ward17", "sms:+15550003"}),
        (Query(search="fit this"), {"web-ward_7"}),
        (Query(search="  Splitting "), {"web-ward17"}),
        # % and _ are what they say, not wildcards
        (Query(search="d_7"), {"web-ward_7"}),
        (Query(search="100%"), {"web-ward17"}),
        (Query(search="%"), {"web-ward17"}),
        (Query(search="_"), {"web-ward_7"}),
        (Query(search="\\"), set()),
        # not the words around the terms: the reason's text, the JSON's keys
        (Query(search="100.4"), set()),
        (Query(search="monograph"), set()),
        (Query(search="reason"), set()),
        (Query(search="nobody"), set()),
    ],
)
def test_queue_filters(filled: EscalationStore, query: Query, senders: set[str]) -> None:
    assert {e.sender_id for e in filled.queue(query)} == senders


# -- the outbox ----------------------------------------------------------------------------------------


def test_the_notification_names_terms_and_level_but_not_the_patients_words(store: EscalationStore) -> None:
    store.record("p1", "sms", "m1", "my secret words about a fever", triage("call_now", FEVER))
    [delivery] = store.claim()
    assert delivery.event == "opened"
    assert delivery.payload["symptoms"] == [{"term": "fever", "level": "call_now"}]
    assert delivery.payload["level"] == "call_now" and delivery.payload["patient"] == "p1"
    assert "secret" not in json.dumps(delivery.payload)


def test_claimed_notifications_are_leased_then_delivered_or_retried(store: EscalationStore) -> None:
    store.record("p1", "web", "m1", "fever", triage("call_now", FEVER))
    store.record("p2", "web", "m2", "fever", triage("call_now", FEVER))
    first, second = store.claim(lease_s=60)
    assert store.claim() == [], "leased to the first worker"
    assert [d.delivery_id for d in store.claim(now=utcnow() + dt.timedelta(seconds=61))] == [
        first.delivery_id,
        second.delivery_id,
    ], "a lease that ran out (a worker died) is taken again"

    store.delivered(first)
    store.failed(second, "HTTP 503", retry_in_s=30)
    status = store.outbox_status()
    assert (status["pending"], status["delivered"]) == (1, 1)
    assert (status["oldest_attempts"], status["last_error"]) == (1, "HTTP 503")
    assert store.claim() == [], "not due before its retry time"
    [retry] = store.claim(now=utcnow() + dt.timedelta(seconds=31))
    assert (retry.delivery_id, retry.attempts) == (second.delivery_id, 1)
    store.delivered(retry)
    assert store.outbox_status()["pending"] == 0
    assert store.claim(now=utcnow() + dt.timedelta(days=1)) == []


def test_concurrent_workers_claim_each_notification_once(store: EscalationStore) -> None:
    for number in range(12):
        store.record(f"p{number}", "web", f"m{number}", "fever", triage("call_now", FEVER))
    claims = together(4, lambda i: store.claim(limit=12))
    taken = [d.delivery_id for claim in claims for d in claim]
    assert len(taken) == len(set(taken)) == 12, claims


# -- the SQLite file -----------------------------------------------------------------------------------


def test_the_sqlite_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new-folder" / "triage.db"
    old_umask = os.umask(0)  # the mode must not depend on a careful umask
    try:
        store = EscalationStore(f"sqlite:///{path}")
        store.record("p1", "web", "m1", "fever", triage("call_now", FEVER))
        files = [path, *path.parent.glob("triage.db-*")]  # with the write-ahead log and its index
        assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}, files
        store.engine.dispose()
    finally:
        os.umask(old_umask)
