"""The escalations as a FHIR R4 (4.0.1) Bundle, for the hospital's record: `python -m bot.careteam
export-fhir` and the admin page's export.

Per escalation: the **Patient** (identifier = the medical record number, name, birth date, every phone
number as telecom, preferred language), a **DetectedIssue** (code = the triage level; severity; one
evidence entry per catalogue term, each pointing at the messages that reported it; status
`preliminary` while open and `final` once resolved; the acknowledgement as a mitigation, with who and
when), and one **Communication** per escalating message carrying the patient's words, sent by the
patient, about the issue. Everything references the Patient by its `urn:uuid:` full URL inside the
Bundle (type `collection`).

A conversation that belongs to no enrolled patient (a web visitor without a personal link, an unknown
number) still has a Patient, identified by the conversation key and tagged `unverified`: FHIR requires
a subject, and the record must not pretend to know who wrote.

Symptoms are coded with the catalogue's own code system (`<TRIAGE_FHIR_SYSTEM>/side-effect`, the
monograph's term as code) and its text. No SNOMED CT or MedDRA codes: the catalogue has no mapping
reviewed by a terminologist, and a wrong standard code would be worse than plain text.

Every resource is checked with `fhir.resources` 6.4.0 (FHIR 4.0.1) before the Bundle is returned: an
export that does not validate fails instead of sending a malformed record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid
from typing import Any

import sqlalchemy as sa
from fhir.resources.bundle import Bundle

from bot.careteam.patients import Patient, PatientError, Patients
from bot.careteam.store import Escalation, EscalationStore, Query, utcnow

DEFAULT_SYSTEM = "urn:blincyto-triage"
_NAMESPACE = uuid.UUID("6f1c8b0e-3d55-4bde-9a77-0c1f3e2b9a41")  # stable full URLs across exports
MR_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR", "display": "Medical record number"}
SEVERITY = {"emergency": "high", "call_now": "high", "unclear": "moderate"}
PRIORITY = {"emergency": "stat", "call_now": "urgent", "unclear": "routine"}
LEVEL_DISPLAY = {"emergency": "Emergency", "call_now": "Call the care team now", "unclear": "Unclear: a person reviews"}


def system() -> str:
    """The base of this deployment's code systems and identifiers (set it to a URL the hospital owns)."""
    return os.environ.get("TRIAGE_FHIR_SYSTEM", "").strip().rstrip("/") or DEFAULT_SYSTEM


def mrn_system() -> str:
    """The hospital's namespace for medical record numbers (`TRIAGE_MRN_SYSTEM`)."""
    return os.environ.get("TRIAGE_MRN_SYSTEM", "").strip() or f"{system()}:mrn"


def parse_since(text: str) -> dt.datetime:
    """An ISO 8601 date or time; a time without a zone is UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text[:40]!r} is not an ISO 8601 date or time (e.g. 2026-11-28T09:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def export(
    engine: sa.engine.Engine, since: dt.datetime | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The Bundle (as JSON-ready data) of every escalation with a message at or after `since`."""
    store, roster = EscalationStore(engine=engine), Patients(engine)
    items = [
        item
        for item in store.queue(Query(status="all"))
        if not item.is_incident and (since is None or item.last_message_at >= since)
    ]
    entries: dict[str, dict[str, Any]] = {}
    for item in sorted(items, key=lambda escalation: escalation.id):
        patient_url, patient = _patient_entry(roster, item)
        entries.setdefault(patient_url, {"fullUrl": patient_url, "resource": patient})
        issue_url = _url(f"escalation:{item.id}")
        messages = store.messages(item.id)
        message_urls = {message["message_id"]: _url(f"message:{message['message_id']}") for message in messages}
        entries[issue_url] = {"fullUrl": issue_url, "resource": _issue(item, patient_url, messages, message_urls)}
        for message in messages:
            url = message_urls[message["message_id"]]
            entries[url] = {"fullUrl": url, "resource": _communication(message, item, patient_url, issue_url)}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": _instant(now or utcnow()),
        "entry": list(entries.values()),
    }
    Bundle.parse_obj(bundle)  # raises pydantic's ValidationError naming the resource and field
    return bundle


def describe(bundle: dict[str, Any], since: dt.datetime | None) -> str:
    """For the audit log: what left, by resource type, without any patient's data."""
    counts: dict[str, int] = {}
    for entry in bundle.get("entry", []):
        kind = entry["resource"]["resourceType"]
        counts[kind] = counts.get(kind, 0) + 1
    shown = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items())) or "nothing"
    return f"{shown}; since {since.isoformat() if since else 'the beginning'}"


def conversation(sender_id: str) -> str:
    """How the export names a conversation: an SMS one by its number; a web one by a digest of its id,
    since the id itself lets whoever holds it write into that conversation."""
    if sender_id.startswith("sms:"):
        return sender_id
    channel = sender_id.split(":", 1)[0] if ":" in sender_id else "web"
    return f"{channel}:{hashlib.sha256(sender_id.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def _url(key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, key)}"


def _patient_entry(roster: Patients, item: Escalation) -> tuple[str, dict[str, Any]]:
    if item.patient_id is not None:
        try:
            patient = roster.get(item.patient_id)
        except PatientError:
            patient = None
        if patient is not None:
            return _url(patient.key), _patient(patient)
    # Unverified: who wrote is a conversation, not a known person.
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {
            "tag": [{"system": f"{system()}/identity", "code": "unverified", "display": "Not an enrolled patient"}]
        },
        "identifier": [{"system": f"{system()}:conversation", "value": conversation(item.sender_id)}],
    }
    if item.sender_id.startswith("sms:"):
        resource["telecom"] = [{"system": "sms", "value": item.sender_id.removeprefix("sms:")}]
    return _url(f"sender:{item.sender_id}"), resource


def _patient(patient: Patient) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"use": "usual", "type": {"coding": [MR_TYPE]}, "system": mrn_system(), "value": patient.mrn}],
        "active": patient.status == "active",
        "name": [{"use": "official", "text": patient.name}],
        "birthDate": patient.birth_date.isoformat(),
        "telecom": [
            {"system": "phone", "value": number, "use": "mobile", "rank": rank}
            for rank, number in enumerate(patient.phones, start=1)
        ],
        "communication": [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": patient.language}]}, "preferred": True}
        ],
    }


def _issue(
    item: Escalation, patient_url: str, messages: list[dict[str, Any]], message_urls: dict[str, str]
) -> dict[str, Any]:
    evidence = []
    for symptom in item.symptoms:
        reported = [
            {"reference": message_urls[message["message_id"]]}
            for message in messages
            if any(s.get("term") == symptom["term"] for s in message["triage"].get("symptoms") or [])
        ]
        code = {"coding": [{"system": f"{system()}/side-effect", "code": symptom["term"]}], "text": symptom["term"]}
        evidence.append({"code": [code], **({"detail": reported} if reported else {})})
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "identifier": [{"system": f"{system()}:escalation", "value": str(item.id)}],
        "status": "final" if item.status == "resolved" else "preliminary",
        "code": {
            "coding": [
                {"system": f"{system()}/triage-level", "code": item.level, "display": LEVEL_DISPLAY[item.level]}
            ],
            "text": f"{LEVEL_DISPLAY[item.level]}: {'; '.join(item.terms) or 'no catalogue term'}",
        },
        "severity": SEVERITY[item.level],
        "patient": {"reference": patient_url},
        "identifiedDateTime": _instant(item.first_message_at),
        "detail": f"Symptom triage by the blinatumomab assistant, {item.message_count} message(s) by {item.channel}.",
    }
    if evidence:
        resource["evidence"] = evidence
    mitigation = []
    if item.acknowledged_at is not None:
        action = {"text": "Acknowledged by the care team (patient called back)"}
        mitigation.append(
            {"action": action, "date": _instant(item.acknowledged_at), "author": {"display": item.acknowledged_by}}
        )
    if item.resolved_at is not None:
        mitigation.append(
            {
                "action": {"text": "Resolved"},
                "date": _instant(item.resolved_at),
                "author": {"display": item.resolved_by},
            }
        )
    if mitigation:
        resource["mitigation"] = mitigation
    return resource


def _communication(message: dict[str, Any], item: Escalation, patient_url: str, issue_url: str) -> dict[str, Any]:
    sender = str(message.get("sender_id") or item.sender_id)
    return {
        "resourceType": "Communication",
        "identifier": [{"system": f"{system()}:message", "value": message["message_id"]}],
        "status": "completed",
        "priority": PRIORITY.get(message["level"], "routine"),
        "medium": [{"text": "SMS" if sender.startswith("sms:") else "web chat"}],
        "subject": {"reference": patient_url},
        "about": [{"reference": issue_url}],
        "sender": {"reference": patient_url, "display": conversation(sender)},
        "sent": _instant(message["received_at"]),
        "payload": [{"contentString": message["text"]}],
    }


def _instant(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
