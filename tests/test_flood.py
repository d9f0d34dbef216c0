"""A flood against the real servers (Rasa with our channels, the action server, the care-team app):
hundreds of emergency messages from one address, each with a new sender id, all past the address's
rate limit. Each still gets the safe reply, and its words are stored, but together they make one
incident with one notification, not one escalation and notification each; a real emergency sent by SMS
during the flood is the first row of the queue; the incident's page shows the refused messages' words;
and the queue pages with a total ("Showing 1-50 of 612") instead of hiding rows.

The figures of the run (messages, escalations, notifications, seconds) are written to
build/test-output/flood.json."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.careteam.store import EscalationStore, escalations, outbox
from tests.conftest import ROOT, SHOTS, Assistant
from tests.test_careteam_app import Client
from tests.test_sms import sms, text_of

pytestmark = pytest.mark.integration
FLOOD = 400
#: Low, so that the flood is refused from its first message (the defaults are 20 and 120 a minute).
PER_ADDRESS = 5
PASSWORD = "flood watch night shift"
FIGURES = SHOTS / "flood.json"


@dataclass
class Flooded:
    assistant: Assistant
    store: EscalationStore
    statuses: list[int]
    first_texts: list[str]
    seconds: float
    real_phone: str
    real_reply: str

    def count(self, table: sa.Table) -> int:
        with self.store.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    def client(self) -> Client:
        client = Client(self.assistant.ports.careteam)
        assert client.login("flood.nurse", PASSWORD) == 302
        return client


def send(assistant: Assistant, text: str) -> tuple[int, Any]:
    """A message from a client that names no conversation: the server issues a new sender id for it,
    as it would for a script that starts a new conversation with every message."""
    return assistant.post(json.dumps({"message": text}).encode())


@pytest.fixture(scope="module")
def flooded(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flooded]:
    assistant = Assistant(tmp_path_factory.mktemp("flood"))
    assistant.env["TRIAGE_RATE_PER_ADDRESS"] = str(PER_ADDRESS)
    try:
        assistant.start_actions()
        assistant.start_rasa()
        assistant.start_careteam()
        add = subprocess.run(
            [sys.executable, "-m", "bot.careteam", "add-user", "flood.nurse", "--password-stdin"],
            input=PASSWORD + "\n", text=True, capture_output=True, env=assistant.env, cwd=ROOT, check=False,
        )  # fmt: skip
        assert add.returncode == 0, add.stderr
        # The address's minute starts with ordinary messages, which open no escalation.
        for _ in range(PER_ADDRESS):
            assert send(assistant, "hello")[0] == 200
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda n: send(assistant, f"he had a seizure, flood message {n}"), range(FLOOD)))
        seconds = time.monotonic() - started
        # During the flood, a patient texts about a real emergency (SMS has no address limit).
        phone = "+1555" + str(uuid.uuid4().int)[:7]
        status, twiml = sms(assistant, phone, "my daughter had a seizure and will not wake up")
        assert status == 200
        store = EscalationStore(f"sqlite:///{assistant.db}")
        yield Flooded(
            assistant,
            store,
            [status for status, _ in answers],
            [messages[0].get("text", "") for _, messages in answers],
            seconds,
            phone,
            text_of(twiml),
        )
        store.engine.dispose()
    finally:
        assistant.stop_all()


def test_every_flood_message_is_refused_with_the_safe_reply(flooded: Flooded) -> None:
    assert flooded.statuses == [429] * FLOOD
    assert all(text.startswith("Call emergency services now: 911.") for text in flooded.first_texts)


def test_the_flood_is_one_incident_with_one_notification(flooded: Flooded) -> None:
    items = flooded.store.queue()
    incidents = [item for item in items if item.is_incident]
    assert len(incidents) == 1, [item.sender_id for item in items]
    [incident] = incidents
    assert (incident.level, incident.message_count, incident.sender_id) == ("emergency", FLOOD, "address 127.0.0.1")
    assert flooded.count(escalations) == 2, "the incident and the real emergency, not one escalation per message"
    assert flooded.count(outbox) == 2, "one notification for the incident, one for the real emergency"
    senders = {message["sender_id"] for message in flooded.store.messages(incident.id)}
    assert len(senders) == FLOOD, "every refused message kept, with the sender id it was given"
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(
        json.dumps(
            {
                "refused_messages": FLOOD,
                "escalations": flooded.count(escalations),
                "notifications": flooded.count(outbox),
                "seconds": round(flooded.seconds, 2),
                "messages_per_second": round(FLOOD / flooded.seconds, 1),
            },
            indent=2,
        )
    )


def test_the_real_emergency_is_the_first_row_of_the_queue(flooded: Flooded) -> None:
    assert flooded.real_reply.startswith("Call emergency services")
    first, second = flooded.store.queue()[:2]
    assert (first.sender_id, first.level, first.kind) == (f"sms:{flooded.real_phone}", "emergency", "patient")
    assert second.is_incident
    _, _, page = flooded.client().get("/")
    rows = re.findall(r"<tr class=\"level-[^\"]+\">(.*?)</tr>", page, re.S)
    assert flooded.real_phone in rows[0]
    assert "Rate-limited" in rows[1] and f"{FLOOD} messages from address 127.0.0.1" in rows[1]
    assert "Showing 1–2 of 2" in page


def test_the_incident_page_shows_the_refused_messages_words(flooded: Flooded) -> None:
    [incident] = [item for item in flooded.store.queue() if item.is_incident]
    status, _, page = flooded.client().get(f"/escalations/{incident.id}")
    assert status == 200
    words = re.sub(r"<[^>]+>", "", page)  # the matched words are marked up: read the text
    for n in (0, 17, FLOOD - 1):
        assert f"he had a seizure, flood message {n}" in words
    assert page.count('<mark class="emergency" title="seizures: emergency">seizure</mark>') == FLOOD
    assert page.count("refused by the address rate limit, answered with the safe reply") == FLOOD
    assert f"{FLOOD} refused messages from address 127.0.0.1" in page


def test_the_queue_pages_with_a_total_and_hides_no_row(flooded: Flooded) -> None:
    fever = {"level": "call_now", "symptoms": [{"term": "fever", "level": "call_now", "span": "fever"}]}
    for n in range(610):
        flooded.store.record(f"web:ward-{n:03d}", "web", f"ward-m{n}", "fever", fever)
    client = flooded.client()
    _, _, page = client.get("/")
    assert "Showing 1–50 of 612" in page
    assert flooded.real_phone in page.split("<tbody", 1)[1].split("</tr>", 1)[0], "still the first row"
    assert 'rel="next"' in page and "Page 1 of 13" in page
    _, _, last = client.get("/?status=open&page=13")
    assert "Showing 601–612 of 612" in last and 'rel="next"' not in last
    status, headers, rows = client.get("/queue/rows?page=2", **{"X-Requested-With": "fetch"})
    assert status == 200
    assert (headers["x-total-count"], headers["x-showing"], headers["x-page"]) == ("612", "51-100", "2/13")
    assert rows.count("<tr") == 50
    seen = set()
    for number in range(1, 14):
        _, _, part = client.get(f"/queue/rows?page={number}", **{"X-Requested-With": "fetch"})
        seen.update(re.findall(r'href="/escalations/(\d+)"', part))
    assert len(seen) == 612, "every row on some page, none hidden"
