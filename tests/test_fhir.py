"""The FHIR R4 export: every resource validates with fhir.resources 6.4.0 (FHIR 4.0.1), each escalation
has its Patient (MRN, name, birth date, telecom), a DetectedIssue with the level and the catalogue
terms, and a Communication per message with the patient's words, all referencing that Patient inside
the Bundle; an unenrolled sender is an unverified Patient; `--since` filters; the command line writes
an owner-only file and audits the export without any patient data in the audit entry."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydantic
import pytest
import sqlalchemy as sa
from fhir.resources import get_fhir_model_class

from bot.careteam import fhir
from bot.careteam.accounts import Accounts
from bot.careteam.patients import Patients
from bot.careteam.store import EscalationStore, utcnow
from bot.database import create_engine

ROOT = Path(__file__).resolve().parents[1]
ANA = "+16175550123"
SEIZURE = {"level": "emergency", "symptoms": [{"term": "seizures", "level": "emergency", "span": "fit"}]}
FEVER_AND_HEADACHE = {
    "level": "call_now",
    "symptoms": [{"term": "fever", "level": "call_now", "span": "39"}, {"term": "headache", "level": "call_now"}],
}
UNCLEAR = {"level": "unclear", "symptoms": []}


@pytest.fixture
def engine(tmp_path: Path) -> sa.engine.Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'triage.db'}")
    Accounts(engine)
    roster = Patients(engine)
    roster.enrol("nurse", "Ana Ruiz", "MRN-1", "2015-04-02", [ANA, "+16175550188"], "es", ["2026-11-28"])
    store = EscalationStore(engine=engine)
    week_ago = utcnow() - dt.timedelta(days=7)
    store.record(f"sms:{ANA}", "sms", "m1", "she had a fit", SEIZURE, received_at=week_ago)
    store.record(
        "sms:+16175550188", "sms", "m2", "temp 39 and her head hurts", FEVER_AND_HEADACHE, received_at=week_ago
    )
    store.acknowledge(1, "nurse", "called back")
    store.record("web:visitor", "rest", "m3", "I feel strange", UNCLEAR)
    return engine


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in bundle["entry"] if entry["resource"]["resourceType"] == kind]


def test_every_resource_validates_as_fhir_4_0_1(engine: sa.engine.Engine) -> None:
    bundle = fhir.export(engine)
    assert {entry["resource"]["resourceType"] for entry in bundle["entry"]} == {
        "Patient",
        "DetectedIssue",
        "Communication",
    }
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).parse_obj(resource)
    get_fhir_model_class("Bundle").parse_obj(bundle)


def test_the_validator_used_refuses_a_broken_resource(engine: sa.engine.Engine) -> None:
    issue = resources(fhir.export(engine), "DetectedIssue")[0]
    with pytest.raises(pydantic.ValidationError, match="status"):
        get_fhir_model_class("DetectedIssue").parse_obj({key: value for key, value in issue.items() if key != "status"})
    with pytest.raises(pydantic.ValidationError, match="birthDate"):
        get_fhir_model_class("Patient").parse_obj({"resourceType": "Patient", "birthDate": "02/04/2015"})


#: FHIR R4's required bindings for the codes the export writes: fhir.resources 6.4.0 checks types,
#: cardinality and formats, not value sets, so these are checked here.
REQUIRED_CODES = {
    ("DetectedIssue", "status"): {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                                  "entered-in-error", "unknown"},
    ("DetectedIssue", "severity"): {"high", "moderate", "low"},
    ("Communication", "status"): {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                                  "entered-in-error", "unknown"},
    ("Communication", "priority"): {"routine", "urgent", "asap", "stat"},
}  # fmt: skip


def test_codes_with_required_bindings_are_in_their_value_sets(engine: sa.engine.Engine) -> None:
    bundle = fhir.export(engine)
    assert bundle["type"] == "collection"
    for (kind, name), allowed in REQUIRED_CODES.items():
        for resource in resources(bundle, kind):
            assert resource[name] in allowed, (kind, name, resource[name])
    for patient in resources(bundle, "Patient"):
        assert {t["system"] for t in patient.get("telecom", [])} <= {"phone", "fax", "email", "pager", "url", "sms"}


def test_the_patient_carries_mrn_name_birth_date_and_telecom(engine: sa.engine.Engine) -> None:
    patient = resources(fhir.export(engine), "Patient")[0]
    assert patient["identifier"][0]["value"] == "MRN-1"
    assert patient["identifier"][0]["type"]["coding"][0]["code"] == "MR"
    assert patient["name"] == [{"use": "official", "text": "Ana Ruiz"}]
    assert patient["birthDate"] == "2015-04-02"
    assert [t["value"] for t in patient["telecom"]] == [ANA, "+16175550188"]


def test_the_issue_has_the_level_and_terms_and_everything_references_the_patient(engine: sa.engine.Engine) -> None:
    bundle = fhir.export(engine)
    urls = {entry["fullUrl"]: entry["resource"] for entry in bundle["entry"]}
    issue = resources(bundle, "DetectedIssue")[0]
    assert issue["code"]["coding"][0]["code"] == "emergency"
    assert [e["code"][0]["text"] for e in issue["evidence"]] == ["seizures", "fever", "headache"]
    assert issue["mitigation"][0]["author"] == {"display": "nurse"}
    patient_url = issue["patient"]["reference"]
    assert urls[patient_url]["identifier"][0]["value"] == "MRN-1"
    words = []
    for message in resources(bundle, "Communication"):
        assert urls[message["subject"]["reference"]]["resourceType"] == "Patient"
        assert all(urls[ref["reference"]]["resourceType"] == "DetectedIssue" for ref in message["about"])
        words.append((message["subject"]["reference"] == patient_url, message["payload"][0]["contentString"]))
    assert words == [(True, "she had a fit"), (True, "temp 39 and her head hurts"), (False, "I feel strange")]
    for evidence in issue["evidence"]:
        assert all(urls[ref["reference"]]["resourceType"] == "Communication" for ref in evidence["detail"])


def test_a_sender_who_is_no_enrolled_patient_is_an_unverified_patient(engine: sa.engine.Engine) -> None:
    patients = resources(fhir.export(engine), "Patient")
    visitor = patients[1]
    assert visitor["meta"]["tag"][0]["code"] == "unverified"
    assert "name" not in visitor and "birthDate" not in visitor
    assert "web:visitor" not in json.dumps(visitor)  # a web id lets its holder write into the conversation


def test_since_keeps_only_escalations_with_a_later_message(engine: sa.engine.Engine) -> None:
    bundle = fhir.export(engine, since=utcnow() - dt.timedelta(days=1))
    assert [m["payload"][0]["contentString"] for m in resources(bundle, "Communication")] == ["I feel strange"]
    assert len(resources(bundle, "DetectedIssue")) == 1


def test_the_command_line_writes_an_owner_only_bundle_and_audits_it(engine: sa.engine.Engine, tmp_path: Path) -> None:
    output = tmp_path / "export.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRIAGE_DB_URL": str(engine.url)}
    done = subprocess.run(
        [sys.executable, "-m", "bot.careteam", "export-fhir", "--since", "2020-01-01", "--output", str(output)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    get_fhir_model_class("Bundle").parse_obj(json.loads(output.read_text()))
    entry = Accounts(engine).audit_entries(username=f"cli:{getpass.getuser()}")[0]
    assert entry["action"] == "export_fhir"
    assert entry["detail"].startswith("3 Communication, 2 DetectedIssue, 2 Patient; since 2020-01-01")
    assert "Ana" not in entry["detail"] and "MRN" not in entry["detail"]
    bad = subprocess.run(
        [sys.executable, "-m", "bot.careteam", "export-fhir", "--since", "last week"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("error: --since 'last week' is not an ISO 8601 date")
