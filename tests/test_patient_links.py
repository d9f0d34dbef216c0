"""Personal links: a usable link binds the new web conversation to its patient; a revoked, re-issued,
expired, forged or discharged patient's link binds nothing, and its visitor is still triaged, unverified.
Then through the real servers: the session endpoint, a web message and a caregiver's text landing in
the patient's one escalation, an unknown number flagged as nobody's, and the chat page opened from the
link in a real browser, which takes the token out of the address bar."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, expect

from bot.careteam.accounts import Accounts
from bot.careteam.links import Links, patient_links
from bot.careteam.patient_views import conversations
from bot.careteam.patients import Patients, patient_for
from bot.careteam.store import EscalationStore, utcnow
from bot.database import create_engine
from tests.conftest import SHOTS, Assistant
from tests.test_sms import sms

ANA = "+16175550123"
ANA_MOTHER = "+16175550188"


@pytest.fixture
def engine(tmp_path: Path) -> sa.engine.Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'triage.db'}")
    Accounts(engine)
    return engine


def enrol(engine: sa.engine.Engine, mrn: str = "MRN-1", numbers: tuple[str, ...] = (ANA, ANA_MOTHER)) -> int:
    return Patients(engine).enrol("nurse", "Ana Ruiz", mrn, "2015-04-02", list(numbers)).id


def owner(engine: sa.engine.Engine, sender: str) -> int | None:
    with engine.connect() as connection:
        return patient_for(connection, sender)


def test_a_usable_link_binds_the_new_conversation_to_its_patient(engine: sa.engine.Engine) -> None:
    patient = enrol(engine)
    links = Links(engine)
    issued = links.issue("nurse", patient)
    assert links.open_conversation(issued.token, "web:new-1") == patient
    assert owner(engine, "web:new-1") == patient
    state = links.latest(patient)
    assert state is not None and state.last_used_at is not None


def test_a_revoked_link_binds_nothing(engine: sa.engine.Engine) -> None:
    patient = enrol(engine)
    links = Links(engine)
    issued = links.issue("nurse", patient)
    assert links.revoke("nurse", patient) == 1
    assert links.open_conversation(issued.token, "web:new-2") is None
    assert owner(engine, "web:new-2") is None


def test_a_new_link_ends_the_old_one(engine: sa.engine.Engine) -> None:
    patient = enrol(engine)
    links = Links(engine)
    old, new = links.issue("nurse", patient), links.issue("nurse", patient)
    assert links.open_conversation(old.token, "web:old") is None
    assert links.open_conversation(new.token, "web:new") == patient


def test_an_expired_link_binds_nothing(engine: sa.engine.Engine) -> None:
    patient = enrol(engine)
    links = Links(engine)
    issued = links.issue("nurse", patient, days=1)
    with engine.begin() as connection:
        connection.execute(patient_links.update().values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert links.open_conversation(issued.token, "web:late") is None
    assert owner(engine, "web:late") is None


@pytest.mark.parametrize(
    "forged",
    [secrets.token_urlsafe(32), "", "x" * 43, "é" * 43, None, 42, ["a"], {"p": "x"}, "' OR 1=1 --" + "a" * 32],
)
def test_a_forged_link_binds_nothing(engine: sa.engine.Engine, forged: Any) -> None:
    patient = enrol(engine)
    Links(engine).issue("nurse", patient)
    assert Links(engine).open_conversation(forged, "web:forger") is None
    assert owner(engine, "web:forger") is None


def test_a_discharged_patients_link_binds_nothing(engine: sa.engine.Engine) -> None:
    patient = enrol(engine)
    issued = Links(engine).issue("nurse", patient)
    Patients(engine).discharge("nurse", patient)
    assert Links(engine).open_conversation(issued.token, "web:after") is None


# -- through the real servers ------------------------------------------------------------------------


def session(assistant: Assistant, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = assistant.post_to("/webhooks/rest/session", json.dumps(body).encode())
    assert status == 200, answer
    return dict(answer)


def write(assistant: Assistant, sender: str, text: str) -> None:
    status, answer = assistant.post_to(
        "/webhooks/rest/webhook", json.dumps({"sender": sender, "message": text}).encode()
    )
    assert status == 200 and answer[0]["recipient_id"] == sender, answer


@pytest.mark.integration
def test_web_by_link_and_a_caregivers_text_are_one_patient_escalation(assistant: Assistant) -> None:
    engine = create_engine(f"sqlite:///{assistant.db}")
    Accounts(engine)
    patient = enrol(engine, "MRN-LINK", ("+16175550131", "+16175550132"))
    issued = Links(engine).issue("nurse", patient)
    opened = session(assistant, {"link": issued.token})
    assert opened["verified"] is True
    write(assistant, opened["sender"], "she had a seizure")
    assert sms(assistant, "+16175550132", "and now a temp of 39.2")[0] == 200
    store = EscalationStore(engine=engine)
    mine = [item for item in store.queue() if item.patient_id == patient]
    assert len(mine) == 1, mine
    assert mine[0].message_count == 2 and mine[0].level == "emergency"
    assert [m["sender_id"] for m in store.messages(mine[0].id)] == [opened["sender"], "sms:+16175550132"]
    # The patient page: every conversation on every channel, in order.
    turns = conversations(engine, Patients(engine).senders(patient))
    patient_turns = [(turn.note, turn.text) for turn in turns if turn.speaker == "patient"]
    assert patient_turns == [("web chat", "she had a seizure"), ("SMS from +1 617-555-0132", "and now a temp of 39.2")]


@pytest.mark.integration
def test_a_forged_link_and_an_unknown_number_are_triaged_and_belong_to_nobody(assistant: Assistant) -> None:
    opened = session(assistant, {"link": secrets.token_urlsafe(32)})
    assert opened["verified"] is False
    write(assistant, opened["sender"], "he had a seizure")
    assert sms(assistant, "+16175550139", "she had a seizure")[0] == 200
    store = EscalationStore(f"sqlite:///{assistant.db}")
    for sender in (opened["sender"], "sms:+16175550139"):
        [item] = [item for item in store.queue() if item.sender_id == sender]
        assert item.level == "emergency" and item.patient_id is None


@pytest.mark.integration
def test_the_chat_page_opened_from_the_link_is_the_patients(assistant: Assistant, browser: Browser) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{assistant.db}")
    Accounts(engine)
    patient = enrol(engine, "MRN-PAGE", ("+16175550141",))
    issued = Links(engine).issue("nurse", patient)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(issued.url.replace("http://localhost:5005", f"http://localhost:{assistant.ports.rasa}"))
    expect(page).to_have_url(f"http://localhost:{assistant.ports.rasa}/webhooks/web/")  # the token is gone
    assert requested and all(issued.token not in url for url in requested)  # never sent in an address
    expect(page.get_by_label("Describe how you feel")).to_be_enabled()
    page.get_by_label("Describe how you feel").fill("my daughter has a temp of 38.9")
    page.keyboard.press("Enter")
    expect(page.locator("li.card.level-call_now").last).to_be_visible()
    page.screenshot(path=str(SHOTS / "webchat-personal-link.png"), full_page=True)
    context.close()
    store = EscalationStore(engine=engine)
    assert [item.level for item in store.queue() if item.patient_id == patient] == ["call_now"]
