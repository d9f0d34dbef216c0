"""A flood must not drown the queue, and nothing a message carries keeps it off the queue: messages refused
by an address's rate limit make one incident per address (a count, the worst level, one notification);
patients' emergencies sort above incidents'; the queue pages with totals and never caps silently; lone
surrogates, NUL, over-long ids and times without a zone are stored, not set aside. On SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.careteam import storable
from bot.careteam.recorder import Recorder
from bot.careteam.store import EscalationStore, Query, escalation_messages, escalations, outbox, utcnow
from bot.careteam.transcript import transcript
from tests.postgres import Server, fresh_database

NOW = utcnow()
FLOOD = "address 203.0.113.9"


def symptom(term: str, level: str, span: str = "") -> dict[str, Any]:
    span = span or term
    return {"term": term, "level": level, "syndromes": [], "span": span, "start": 0, "end": len(span)}


def triage(level: str, *symptoms: dict[str, Any]) -> dict[str, Any]:
    return {"level": level, "symptoms": list(symptoms), "temperature": None}


SEIZURE = triage("emergency", symptom("seizures", "emergency", "seizure"))
FEVER = triage("call_now", symptom("fever", "call_now"))
UNCLEAR = triage("unclear")


def ago(minutes: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EscalationStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'triage.db'}"
    else:
        server: Server = request.getfixturevalue("postgres_server")
        url = fresh_database(server)
    store = EscalationStore(url)
    yield store
    store.engine.dispose()


def count(store: EscalationStore, table: sa.Table) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def flood(store: EscalationStore, messages: int, source: str = FLOOD, result: dict[str, Any] = SEIZURE) -> None:
    for n in range(messages):
        store.record(f"flood-{source}-{n}", "web", f"{source}-m{n}", f"seizure number {n}", result, incident=source)


# -- one incident per flooding source ----------------------------------------------------------------


def test_a_flood_from_one_address_is_one_incident_with_a_count_and_one_notification(store: EscalationStore) -> None:
    flood(store, 300)
    [incident] = store.queue()
    assert (incident.kind, incident.sender_id, incident.level) == ("incident", FLOOD, "emergency")
    assert incident.message_count == 300
    assert count(store, escalations) == 1
    assert count(store, outbox) == 1, "one notification per incident, not per message"
    words = [m["text"] for m in store.messages(incident.id)]
    assert words[:2] == ["seizure number 0", "seizure number 1"] and len(words) == 300, "every message's words"
    assert {m["sender_id"] for m in store.messages(incident.id)} == {f"flood-{FLOOD}-{n}" for n in range(300)}
    with store.engine.connect() as connection:
        [body] = [json.loads(row[0]) for row in connection.execute(sa.select(outbox.c.payload))]
    assert (body["kind"], body["patient"], body["level"]) == ("incident", FLOOD, "emergency")
    assert "seizure number" not in json.dumps(body), "no patient's words in a notification"


def test_an_incident_keeps_the_worst_level_and_notifies_once_per_raise(store: EscalationStore) -> None:
    for n, result in enumerate([UNCLEAR, UNCLEAR, FEVER, FEVER, SEIZURE, FEVER, SEIZURE]):
        store.record(f"s{n}", "web", f"m{n}", "words", result, incident=FLOOD)
    [incident] = store.queue()
    assert (incident.level, incident.message_count) == ("emergency", 7)
    with store.engine.connect() as connection:
        events = [row[0] for row in connection.execute(sa.select(outbox.c.event).order_by(outbox.c.id))]
    assert events == ["opened", "level_raised", "level_raised"]


def test_each_flooding_address_is_its_own_incident(store: EscalationStore) -> None:
    flood(store, 20, "address 203.0.113.9")
    flood(store, 20, "address 198.51.100.4")
    assert sorted(e.sender_id for e in store.queue()) == ["address 198.51.100.4", "address 203.0.113.9"]
    assert count(store, outbox) == 2


def test_a_refused_message_joins_its_senders_open_escalation(store: EscalationStore) -> None:
    own = store.record("web-ana", "web", "m1", "I have a fever", FEVER)
    assert own is not None
    change = store.record("web-ana", "web", "m2", "now she had a seizure", SEIZURE, incident=FLOOD)
    assert change is not None and change.escalation.id == own.escalation.id
    [escalation] = store.queue()
    assert (escalation.kind, escalation.level, escalation.message_count) == ("patient", "emergency", 2)


def test_an_acknowledged_incident_stays_acknowledged_while_the_flood_goes_on_unless_the_level_rises(
    store: EscalationStore,
) -> None:
    store.record("s0", "web", "m0", "words", FEVER, incident=FLOOD)
    [incident] = store.queue()
    store.acknowledge(incident.id, "nurse")
    for n in range(1, 30):
        store.record(f"s{n}", "web", f"m{n}", "words", FEVER, incident=FLOOD)
    assert store.get(incident.id).status == "acknowledged"
    assert count(store, outbox) == 1
    store.record("s99", "web", "m99", "a seizure", SEIZURE, incident=FLOOD)
    assert store.get(incident.id).status == "new", "a higher level needs a person again"
    assert count(store, outbox) == 2


def test_a_resolved_incident_is_followed_by_a_new_one(store: EscalationStore) -> None:
    flood(store, 5)
    [incident] = store.queue()
    store.resolve(incident.id, "nurse", "blocked at the proxy")
    store.record("later", "web", "later-1", "seizure", SEIZURE, incident=FLOOD)
    [second] = store.queue()
    assert second.id != incident.id and second.message_count == 1


# -- queue order and paging --------------------------------------------------------------------------


def test_a_patients_emergency_is_above_an_incidents_and_an_incidents_emergency_above_other_levels(
    store: EscalationStore,
) -> None:
    store.record("web-call", "web", "c1", "fever", FEVER, ago(90))
    store.record("s-old", "web", "i1", "seizure", SEIZURE, ago(60), incident=FLOOD)
    store.record("s-fever", "web", "i2", "fever", FEVER, ago(120), incident="address 198.51.100.4")
    store.record("sms:+15550100", "sms", "e1", "she had a seizure", SEIZURE, ago(1))
    order = [(e.kind, e.sender_id) for e in store.queue()]
    assert order == [
        ("patient", "sms:+15550100"),  # the newest, but a patient's emergency
        ("incident", FLOOD),
        ("patient", "web-call"),
        ("incident", "address 198.51.100.4"),
    ]


def test_the_queue_pages_with_a_total_and_never_hides_rows(store: EscalationStore) -> None:
    for n in range(123):
        store.record(f"p{n:03d}", "web", f"m{n}", "fever", FEVER, ago(200 - n))
    pages = [store.page(Query(limit=50, offset=offset)) for offset in (0, 50, 100)]
    assert [(p.first, p.last, p.total) for p in pages] == [(1, 50, 123), (51, 100, 123), (101, 123, 123)]
    assert [p.has_next for p in pages] == [True, True, False]
    assert (pages[0].pages, pages[2].number) == (3, 3)
    seen = [e.sender_id for p in pages for e in p.items]
    assert seen == [f"p{n:03d}" for n in range(123)], "each row once, in queue order"
    assert len(store.queue()) == 123, "no silent cap when no limit is asked for"
    past = store.page(Query(limit=50, offset=500))
    assert (past.items, past.total, past.first) == ([], 123, 0)
    assert store.page(Query(level="emergency")).total == 0


def test_search_finds_an_incident_by_any_of_its_senders(store: EscalationStore) -> None:
    flood(store, 10)
    [found] = store.queue(Query(search=f"flood-{FLOOD}-7"))
    assert found.kind == "incident"


# -- nothing a message carries keeps it off the queue -----------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("fever \ud800 x", "fever \ufffd x"),  # a lone surrogate: UTF-8 cannot hold it
        ("fever \x00 x", "fever \ufffd x"),  # NUL: PostgreSQL refuses it in text
        ("fever \ud83d\ude00 x", "fever \U0001f600 x"),  # a surrogate pair: joined, the emoji kept
        ("fièvre, 39 °C", "fièvre, 39 °C"),
    ],
)
def test_text_that_cannot_be_stored_as_it_came_is_stored_as_near_as_it_can_be(
    store: EscalationStore, sent: str, stored: str
) -> None:
    bad_span = triage("call_now", {**symptom("fever", "call_now"), "span": sent})
    change = store.record("p\ud800", "web", "m1", sent, bad_span)
    assert change is not None and change.recorded
    [message] = store.messages(change.escalation.id)
    assert message["text"] == stored
    assert message["triage"]["symptoms"][0]["span"] == stored
    assert change.escalation.sender_id == "p\ufffd"
    assert change.escalation.symptoms[0]["span"] == stored


def test_over_long_ids_are_stored_distinct_and_a_message_still_once(store: EscalationStore) -> None:
    sender = "s" * 400
    first_id, second_id = "m" * 100 + "1", "m" * 100 + "2"
    assert store.record(sender, "a-channel-name-far-too-long", first_id, "fever", FEVER) is not None
    assert store.record(sender, "web", second_id, "fever", FEVER) is not None
    again = store.record(sender, "web", first_id, "fever", FEVER)
    assert again is not None and not again.recorded, "the same long id maps to the same stored id"
    [escalation] = store.queue()
    assert escalation.message_count == 2 and len(escalation.sender_id) <= 255
    assert escalation.sender_id.startswith("s" * 200)


@pytest.mark.parametrize("size", [16, 64, 255])  # the channel, message id and sender id columns
def test_a_bounded_value_fits_its_column_and_stays_distinct(size: int) -> None:
    values = {storable.bounded("x" * 300 + str(n), size) for n in range(50)}
    assert all(len(value) <= size for value in values)
    assert len(values) == 50, "long ids stay distinct"
    assert storable.bounded("x" * 300 + "7", size) in values, "and map to the same value each time"
    assert storable.bounded("web", size) == "web"


def test_a_time_without_a_zone_and_a_level_the_store_does_not_know_still_reach_the_queue(
    store: EscalationStore,
) -> None:
    naive = dt.datetime(2026, 11, 29, 10, 0)
    change = store.record("p1", "web", "m1", "something odd", {"level": "purple", "symptoms": [{"x": 1}]}, naive)
    assert change is not None
    assert change.escalation.level == "unclear", "a person reads what the store cannot sort"
    assert change.escalation.first_message_at == naive.replace(tzinfo=dt.timezone.utc)


def test_the_recorder_puts_a_lone_surrogate_on_the_queue_not_aside(store: EscalationStore, tmp_path: Path) -> None:
    recorder = Recorder(lambda: store, spool=tmp_path / "spool")
    change = recorder.record("web-1", "web", "m1", "fever \ud800 x", FEVER, utcnow())
    assert change is not None
    # A spool line such a record left behind before the fix (JSON escapes the surrogate) is written too.
    line = json.dumps({"sender_id": "web-2", "channel": "web", "message_id": "m2", "text": "fever \ud800 y",
                       "triage": FEVER, "received_at": utcnow().isoformat()})  # fmt: skip
    recorder.spool.parent.mkdir(parents=True, exist_ok=True)
    recorder.spool.write_text(line + "\n")
    assert recorder.drain() == 1
    texts = sorted(m["text"] for e in store.queue() for m in store.messages(e.id))
    assert texts == ["fever \ufffd x", "fever \ufffd y"]
    assert not recorder.set_aside.exists()


def test_a_database_from_before_incidents_gets_the_new_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = EscalationStore(url)
    old.record("p1", "web", "m1", "fever", FEVER)
    with old.engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_escalation_messages_sender_id")
        connection.exec_driver_sql("ALTER TABLE escalation_messages DROP COLUMN sender_id")
        connection.exec_driver_sql("ALTER TABLE escalations DROP COLUMN kind")
    old.engine.dispose()
    upgraded = EscalationStore(url)
    [escalation] = upgraded.queue()
    assert escalation.kind == "patient"
    upgraded.record("s1", "web", "m2", "seizure", SEIZURE, incident=FLOOD)
    assert [e.kind for e in upgraded.queue()] == ["incident", "patient"]
    assert EscalationStore(url).queue()[0].kind == "incident", "a second start finds the columns there"


# -- the words on the escalation's page --------------------------------------------------------------


def test_refused_messages_are_in_the_transcript_with_how_they_were_answered(store: EscalationStore) -> None:
    seizure = {**symptom("seizures", "emergency", "seizure"), "start": 13, "end": 20}
    refused = {**triage("emergency", seizure), "safety_net": True, "rate_limited": "address"}
    store.record("web-7", "web", "m1", "my son had a seizure", refused, ago(3), incident=FLOOD)
    store.record("web-8", "web", "m2", "another seizure", refused, ago(2), incident=FLOOD)
    turns = transcript(store.engine, FLOOD)
    assert [t.text for t in turns] == ["my son had a seizure", "another seizure"]
    assert turns[0].note == "refused by the address rate limit, answered with the safe reply; from sender web-7"
    assert [p.text for p in turns[0].pieces if p.symptom] == ["seizure"], "the matched words marked"
    # The sender's own page shows it too, although it joined the incident.
    [own] = transcript(store.engine, "web-7")
    assert own.message_id == "m1" and own.speaker == "patient"
    with store.engine.connect() as connection:
        senders = connection.execute(sa.select(escalation_messages.c.sender_id).order_by("id")).scalars().all()
    assert senders == ["web-7", "web-8"]
