"""Enrolment of patients (the store and the command line), their numbers in E.164 with clear errors,
where they are in treatment, the audit of every change, and which escalations are theirs: a text from
any of their numbers, a caregiver's included, lands in the patient's one open escalation; a text from
an unknown number is nobody's."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.careteam import phones, treatment
from bot.careteam.accounts import Accounts
from bot.careteam.patients import PatientError, Patients
from bot.careteam.store import EscalationStore, Query, outbox
from bot.database import create_engine

ROOT = Path(__file__).resolve().parents[1]
ANA = "+16175550123"
ANA_MOTHER = "+16175550188"
SEIZURE = {"level": "emergency", "symptoms": [{"term": "seizures", "level": "emergency", "span": "fit"}]}
FEVER = {"level": "call_now", "symptoms": [{"term": "fever", "level": "call_now", "span": "38.9"}]}


@pytest.fixture
def engine(tmp_path: Path) -> sa.engine.Engine:
    return create_engine(f"sqlite:///{tmp_path / 'triage.db'}")


@pytest.fixture
def roster(engine: sa.engine.Engine) -> Patients:
    Accounts(engine)
    return Patients(engine)


def enrol_ana(roster: Patients, **changes: Any) -> Any:
    values: dict[str, Any] = {
        "name": "Ana Ruiz",
        "mrn": "MRN-1",
        "birth_date": "2015-04-02",
        "numbers": [ANA, "(617) 555-0188"],
        "language": "es",
        "cycle_starts": ["2026-11-28"],
    }
    values.update(changes)
    return roster.enrol("nurse1", **values)


# -- numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "stored"),
    [("+1 617 555 0123", ANA), ("(617) 555-0123", ANA), ("617.555.0123", ANA), ("+34 612 34 56 78", "+34612345678")],
)
def test_numbers_are_stored_in_e164(written: str, stored: str) -> None:
    assert phones.e164(written) == stored


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("", "empty"),
        ("call me", "not a phone number"),
        ("+1 617 555", "too many or too few digits"),
        ("+15551234567", "not a number in use"),  # area code 555 does not exist
        ("+1 617 555 0123 4567 8901", "too many or too few digits"),
    ],
)
def test_bad_numbers_get_a_clear_error(written: str, says: str) -> None:
    with pytest.raises(phones.PhoneError, match=says):
        phones.e164(written)


def test_sms_conversation_keys_give_their_number() -> None:
    assert phones.sender_number("sms:+16175550123") == ANA
    assert phones.sender_number("web:abc") is None
    assert phones.sender_number("sms:12345") is None  # a short code belongs to no patient


# -- treatment position ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("today", "words", "hospital"),
    [
        ("2026-11-27", None, False),
        ("2026-11-28", "cycle 1, day 1", True),
        ("2026-11-30", "cycle 1, day 3", True),
        ("2026-12-01", "cycle 1, day 4", False),
        ("2026-12-26", "cycle 1, day 29 (treatment-free interval)", False),
        ("2027-01-09", "cycle 2, day 1", True),
        ("2027-01-10", "cycle 2, day 2", True),
        ("2027-01-11", "cycle 2, day 3", False),
        ("2027-04-01", "after cycle 2 (day 83 since it started)", False),
    ],
)
def test_cycle_and_day_from_the_latest_start(today: str, words: str | None, hospital: bool) -> None:
    starts = [dt.date(2027, 1, 9), dt.date(2026, 11, 28)]  # in any order
    where = treatment.position(starts, dt.date.fromisoformat(today))
    assert (where.words if where else None) == words
    assert bool(where and where.hospital_advice) is hospital
    if hospital:
        assert where is not None and "monograph recommends hospital care" in where.hospital_advice


# -- enrolment ---------------------------------------------------------------------------------------


def test_enrolment_keeps_everything_the_care_team_needs(roster: Patients) -> None:
    ana = enrol_ana(roster)
    again = roster.get(ana.id)
    assert (again.name, again.mrn, again.birth_date, again.language) == ("Ana Ruiz", "MRN-1", dt.date(2015, 4, 2), "es")
    assert again.phones == (ANA, ANA_MOTHER)
    assert again.cycle_starts == (dt.date(2026, 11, 28),)
    assert again.age(dt.date(2026, 11, 29)) == "11 y"
    assert roster.by_mrn("MRN-1").id == ana.id


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"name": "  "}, "name is empty"),
        ({"mrn": "MRN 1"}, "medical record number"),
        ({"birth_date": "02/04/2015"}, "not a date: write it as YYYY-MM-DD"),
        ({"birth_date": "2999-01-01"}, "in the future"),
        ({"numbers": ["+15551234567"]}, "phone: '\\+15551234567' is not a number in use"),
        ({"numbers": []}, "at least one phone number"),
        ({"language": "spanish!"}, "not a language tag"),
        ({"cycle_starts": ["soon"]}, "cycle start 'soon' is not a date"),
    ],
)
def test_bad_enrolments_are_refused_with_the_field_named(roster: Patients, changes: dict[str, Any], says: str) -> None:
    with pytest.raises(PatientError, match=says):
        enrol_ana(roster, **changes)
    assert roster.all() == []


def test_one_mrn_and_one_number_belong_to_one_patient(roster: Patients) -> None:
    enrol_ana(roster)
    with pytest.raises(PatientError, match="MRN-1 is already enrolled"):
        enrol_ana(roster, name="Someone Else")
    with pytest.raises(PatientError, match=r"\+16175550188 already belongs to .* MRN-1"):
        enrol_ana(roster, mrn="MRN-2", numbers=[ANA_MOTHER])


def test_update_and_discharge_are_audited_with_what_changed(roster: Patients, engine: sa.engine.Engine) -> None:
    ana = enrol_ana(roster)
    roster.update("nurse2", ana.id, numbers=[ANA], cycle_starts=["2026-11-28", "2027-01-09"])
    roster.discharge("dr.lee", ana.id)
    with pytest.raises(PatientError, match="already discharged"):
        roster.discharge("dr.lee", ana.id)
    entries = Accounts(engine).audit_entries(patient=f"patient:{ana.id}")
    assert [(e["username"], e["action"]) for e in reversed(entries)] == [
        ("nurse1", "patient_enrolled"),
        ("nurse2", "patient_updated"),
        ("dr.lee", "patient_discharged"),
    ]
    updated = next(e for e in entries if e["action"] == "patient_updated")["detail"]
    assert f"phones: {ANA}, {ANA_MOTHER} -> {ANA}" in updated
    assert "cycle_starts: 2026-11-28 -> 2026-11-28, 2027-01-09" in updated
    assert roster.get(ana.id).status == "discharged"
    assert roster.all(include_discharged=False) == []


# -- which escalation is whose -----------------------------------------------------------------------


def test_texts_from_the_patients_and_a_caregivers_number_share_the_patients_escalation(
    roster: Patients, engine: sa.engine.Engine
) -> None:
    ana = enrol_ana(roster)
    store = EscalationStore(engine=engine)
    first = store.record(f"sms:{ANA_MOTHER}", "sms", "m1", "she had a fit", SEIZURE)
    second = store.record(f"sms:{ANA}", "sms", "m2", "temp 38.9", FEVER)
    assert first is not None and second is not None
    assert first.escalation.patient_id == ana.id
    assert second.escalation.id == first.escalation.id  # one open escalation per patient
    assert second.escalation.message_count == 2
    senders = [message["sender_id"] for message in store.messages(first.escalation.id)]
    assert senders == [f"sms:{ANA_MOTHER}", f"sms:{ANA}"]  # the number that wrote each message


def test_the_queue_finds_a_patients_escalation_by_name_or_mrn(roster: Patients, engine: sa.engine.Engine) -> None:
    enrol_ana(roster)
    store = EscalationStore(engine=engine)
    store.record(f"sms:{ANA}", "sms", "m1", "she had a fit", SEIZURE)
    store.record("sms:+16175550199", "sms", "m2", "temp 38.9", FEVER)
    assert [item.sender_id for item in store.queue(Query(search="ruiz"))] == [f"sms:{ANA}"]
    assert [item.sender_id for item in store.queue(Query(search="mrn-1"))] == [f"sms:{ANA}"]


def test_a_text_from_an_unknown_number_is_still_escalated_for_nobody(
    roster: Patients, engine: sa.engine.Engine
) -> None:
    enrol_ana(roster)
    store = EscalationStore(engine=engine)
    change = store.record("sms:+16175550199", "sms", "m1", "he had a fit", SEIZURE)
    assert change is not None and change.escalation.patient_id is None
    assert change.escalation.level == "emergency"


def test_notifications_carry_the_patients_id_and_not_their_name(roster: Patients, engine: sa.engine.Engine) -> None:
    ana = enrol_ana(roster)
    EscalationStore(engine=engine).record(f"sms:{ANA}", "sms", "m1", "she had a fit", SEIZURE)
    with engine.connect() as connection:
        payload = connection.execute(sa.select(outbox.c.payload)).scalar_one()
    assert f'"patient_id": {ana.id}' in payload
    assert "Ana" not in payload and "Ruiz" not in payload and "MRN-1" not in payload and "fit" not in payload


# -- the command line --------------------------------------------------------------------------------


def careteam(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRIAGE_DB_URL": f"sqlite:///{tmp_path / 'triage.db'}"}
    env["TRIAGE_WEB_PUBLIC_URL"] = "https://triage.example.org/webhooks/web/"
    return subprocess.run(
        [sys.executable, "-m", "bot.careteam", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


def test_the_command_line_enrols_lists_updates_links_and_discharges(tmp_path: Path) -> None:
    added = careteam(tmp_path, "patients", "add", "--name", "Ana Ruiz", "--mrn", "MRN-1", "--birth-date", "2015-04-02",
                     "--phone", "+1 617 555 0123", "--phone", ANA_MOTHER, "--language", "es",
                     "--cycle-start", "2026-11-28")  # fmt: skip
    assert added.returncode == 0, added.stderr
    patient_id = int(added.stdout.strip())
    listed = careteam(tmp_path, "patients", "list")
    assert listed.stdout.split("\t")[:6] == [str(patient_id), "MRN-1", "Ana Ruiz", "2015-04-02", "es", "active"]
    assert "+1 617-555-0123, +1 617-555-0188" in listed.stdout
    updated = careteam(tmp_path, "patients", "update", "MRN-1", "--add-cycle-start", "2027-01-09")
    assert updated.returncode == 0, updated.stderr
    link = careteam(tmp_path, "patients", "link", "MRN-1")
    assert link.returncode == 0, link.stderr
    # In the fragment: never sent to a server, so never in an access log.
    assert link.stdout.startswith("https://triage.example.org/webhooks/web/#p=")
    token = link.stdout.strip().split("#p=")[1]
    assert "expires" in link.stderr and token not in link.stderr
    with create_engine(f"sqlite:///{tmp_path / 'triage.db'}").connect() as connection:
        stored = connection.execute(sa.text("select token_hash from patient_links")).scalars().all()
        audited = connection.execute(sa.text("select action, detail from careteam_audit_log")).all()
    assert token not in "".join(stored)  # only its hash is kept
    assert all(token not in (detail or "") for _, detail in audited)
    assert [action for action, _ in audited] == ["patient_enrolled", "patient_updated", "link_issued"]
    assert careteam(tmp_path, "patients", "discharge", "MRN-1").returncode == 0
    assert careteam(tmp_path, "patients", "list").stdout == ""
    assert "discharged" in careteam(tmp_path, "patients", "list", "--all").stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--phone", "+15551234567"], "error: phone: '+15551234567' is not a number in use in country +1"),
        (["--phone", "0"], "error: phone: '0' "),
        (["--phone", ANA, "--birth-date", "tomorrow"], "error: the birth date 'tomorrow' is not a date"),
    ],
)
def test_the_command_line_refuses_bad_input_with_a_clear_error(tmp_path: Path, args: list[str], says: str) -> None:
    base = ["patients", "add", "--name", "Ana Ruiz", "--mrn", "MRN-1", "--birth-date", "2015-04-02"]
    done = careteam(tmp_path, *base, *args)
    assert done.returncode == 2
    assert done.stderr.startswith(says), done.stderr
    assert "Traceback" not in done.stderr


def test_the_command_line_names_an_unknown_mrn(tmp_path: Path) -> None:
    done = careteam(tmp_path, "patients", "link", "MRN-404")
    assert done.returncode == 2 and done.stderr == "error: no patient with medical record number 'MRN-404'\n"
