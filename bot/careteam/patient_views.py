"""The care-team app's patient pages: the list and the enrolment form, each patient's page (numbers as
tap-to-call links, where they are in treatment, every conversation on every channel in order, edit,
discharge, the personal link), attaching an unknown sender's escalation to a patient, and the FHIR
export for admins. What the queue and the escalation page show of a patient comes from `cards`.

Every page view and change is audited (the store writes the change and its audit entry together);
every form carries the session's CSRF token (`login_required` in `app` checks it). A new personal
link is shown once, on the page that issued it, to print or to text from the clinician's phone; it
is never put in the audit log or a log line.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sanic import Request, Sanic, response
from sanic.exceptions import NotFound
from sanic.response import HTTPResponse

from bot.careteam import fhir, phones
from bot.careteam.links import Links
from bot.careteam.patients import Patient, PatientError, Patients
from bot.careteam.store import Escalation, EscalationStore, Query, utcnow
from bot.careteam.transcript import Turn, transcript

MAX_FIELD = 400


@dataclass(frozen=True)
class Card:
    """What a page shows of a patient beside an escalation."""

    patient: Patient
    age: str
    numbers: list[tuple[str, str]]  # (E.164 for tel:, as people read it)
    where: str
    hospital_advice: str


@dataclass(frozen=True)
class Tools:
    """What the app's `create_app` lends these routes."""

    page: Callable[..., HTTPResponse]
    login_required: Callable[..., Any]
    audit: Callable[..., Awaitable[None]]
    db: Callable[..., Awaitable[Any]]
    address: Callable[[Request], str]
    store: EscalationStore
    engine: sa.engine.Engine


def card(patient: Patient, today: dt.date) -> Card:
    where = patient.position(today)
    return Card(
        patient=patient,
        age=patient.age(today),
        numbers=[(number, phones.display(number)) for number in patient.phones],
        where=where.words if where else "no treatment cycle started",
        hospital_advice=where.hospital_advice if where else "",
    )


def cards(roster: Patients, items: Iterable[Escalation], today: dt.date | None = None) -> dict[int, Card]:
    """The cards of the enrolled patients among `items`, by patient id."""
    day = today or dt.date.today()
    found: dict[int, Card] = {}
    for item in items:
        if item.patient_id is not None and item.patient_id not in found:
            try:
                found[item.patient_id] = card(roster.get(item.patient_id), day)
            except PatientError:
                continue
    return found


def conversations(engine: sa.engine.Engine, senders: list[str]) -> list[Turn]:
    """Every turn of the patient's conversations, on every channel, in time order, each message once.

    One conversation's transcript also holds the escalating messages of the escalations it opened, which
    for a patient come from their other conversations too: a message is shown from the conversation
    that holds it, and as recorded with the escalation only when no conversation does."""
    everything = [(turn, not turn.note, sender) for sender in senders for turn in transcript(engine, sender)]
    held = {turn.message_id for turn, from_tracker, _ in everything if from_tracker and turn.message_id}
    shown: set[str] = set()
    turns: list[Turn] = []
    for turn, from_tracker, sender in everything:
        if turn.message_id and not from_tracker and (turn.message_id in held or turn.message_id in shown):
            continue
        shown.add(turn.message_id)
        turn.note = turn.note or _channel(sender)
        turns.append(turn)
    return sorted(turns, key=lambda turn: turn.at)


def _channel(sender: str) -> str:
    if sender.startswith("sms:"):
        return f"SMS from {phones.display(sender.removeprefix('sms:'))}"
    return "web chat"


def _numbers(form: Any) -> list[str]:
    return [line for line in (form.get("phones") or "").replace(",", "\n").splitlines() if line.strip()]


def _dates(form: Any) -> list[str]:
    return [part for part in (form.get("cycle_starts") or "").replace(",", " ").split() if part]


def register(app: Sanic, tools: Tools) -> None:
    roster = Patients(tools.engine)
    links = Links(tools.engine)
    page, db, audit = tools.page, tools.db, tools.audit

    def actor(request: Request) -> str:
        return str(request.ctx.session.user.username)

    async def patient_or_404(patient_id: int) -> Patient:
        try:
            return await db(roster.get, patient_id)  # type: ignore[no-any-return]
        except PatientError:
            raise NotFound("no such patient") from None

    async def patient_page(request: Request, patient: Patient, status: int = 200, **extra: Any) -> HTTPResponse:
        senders = await db(roster.senders, patient.id)
        turns = await db(conversations, tools.engine, senders)
        escalations = [
            item for item in await db(tools.store.queue, Query(status="all")) if item.patient_id == patient.id
        ]
        link = await db(links.latest, patient.id)
        values = {"issued": None, "message": "", **extra}
        return page("patient.html", status=status, session=request.ctx.session, card=card(patient, dt.date.today()),
                    turns=turns, escalations=escalations, link=link, now=utcnow(), **values)  # fmt: skip

    @app.get("/patients")
    @tools.login_required()
    async def patients_list(request: Request) -> HTTPResponse:
        everyone = await db(roster.all)
        await audit(request, "view_patients")
        today = dt.date.today()
        return page("patients.html", session=request.ctx.session, cards=[card(p, today) for p in everyone],
                    message="", form={})  # fmt: skip

    @app.post("/patients")
    @tools.login_required()
    async def enrol(request: Request) -> HTTPResponse:
        form = {key: (request.form.get(key) or "")[:MAX_FIELD] for key in
                ("name", "mrn", "birth_date", "phones", "language", "cycle_starts")}  # fmt: skip
        try:
            patient = await db(roster.enrol, actor(request), form["name"], form["mrn"], form["birth_date"],
                               _numbers(form), form["language"] or "en", _dates(form),
                               tools.address(request))  # fmt: skip
        except PatientError as error:
            await audit(request, "enrol_refused", detail=str(error)[:200])
            everyone = await db(roster.all)
            today = dt.date.today()
            return page("patients.html", status=400, session=request.ctx.session,
                        cards=[card(p, today) for p in everyone], message=str(error), form=form)  # fmt: skip
        return response.redirect(f"/patients/{patient.id}")

    @app.get("/patients/<patient_id:int>")
    @tools.login_required()
    async def patient_view(request: Request, patient_id: int) -> HTTPResponse:
        patient = await patient_or_404(patient_id)
        await audit(request, "view_patient", patient=patient.key)
        return await patient_page(request, patient)

    @app.post("/patients/<patient_id:int>/edit")
    @tools.login_required()
    async def edit(request: Request, patient_id: int) -> HTTPResponse:
        patient = await patient_or_404(patient_id)
        form = request.form
        try:
            await db(roster.update, actor(request), patient.id, (form.get("name") or "")[:MAX_FIELD],
                     (form.get("birth_date") or "")[:MAX_FIELD], _numbers(form), (form.get("language") or "")[:16],
                     _dates(form), tools.address(request))  # fmt: skip
        except PatientError as error:
            await audit(request, "update_refused", patient=patient.key, detail=str(error)[:200])
            return await patient_page(request, patient, status=400, message=str(error))
        return response.redirect(f"/patients/{patient.id}")

    @app.post("/patients/<patient_id:int>/discharge")
    @tools.login_required()
    async def discharge(request: Request, patient_id: int) -> HTTPResponse:
        patient = await patient_or_404(patient_id)
        try:
            await db(roster.discharge, actor(request), patient.id, tools.address(request))
        except PatientError as error:
            return await patient_page(request, patient, status=400, message=str(error))
        return response.redirect(f"/patients/{patient.id}")

    @app.post("/patients/<patient_id:int>/link")
    @tools.login_required()
    async def issue_link(request: Request, patient_id: int) -> HTTPResponse:
        patient = await patient_or_404(patient_id)
        try:
            issued = await db(links.issue, actor(request), patient.id, None, tools.address(request))
        except PatientError as error:
            return await patient_page(request, patient, status=400, message=str(error))
        texts = [(number, f"sms:{number}?&body={quote('Your symptom-check link: ' + issued.url)}")
                 for number in patient.phones]  # fmt: skip
        # Shown once: the page is not cached (Cache-Control: no-store) and the token is kept nowhere else.
        return await patient_page(request, await patient_or_404(patient_id), issued=issued, texts=texts)

    @app.post("/patients/<patient_id:int>/revoke-links")
    @tools.login_required()
    async def revoke_links(request: Request, patient_id: int) -> HTTPResponse:
        patient = await patient_or_404(patient_id)
        await db(links.revoke, actor(request), patient.id, tools.address(request))
        return response.redirect(f"/patients/{patient.id}")

    @app.post("/escalations/<escalation_id:int>/attach")
    @tools.login_required()
    async def attach(request: Request, escalation_id: int) -> HTTPResponse:
        mrn = (request.form.get("mrn") or "").strip()[:64]
        try:
            item = await db(tools.store.get, escalation_id)
            patient = await db(roster.by_mrn, mrn)
            await db(attach_sender, tools.store, roster, item, patient, actor(request), tools.address(request))
        except Exception as error:  # unknown escalation or MRN: say so on the page, never a traceback
            await audit(request, "attach_refused", escalation_id=escalation_id, detail=type(error).__name__)
            return response.redirect(f"/escalations/{escalation_id}?error=not_attached")
        await audit(request, "attach_sender", patient=patient.key, escalation_id=escalation_id, detail=item.sender_id)
        return response.redirect(f"/escalations/{escalation_id}")

    @app.get("/export.fhir.json")
    @tools.login_required(admin=True)
    async def export_fhir(request: Request) -> HTTPResponse:
        since_text = (request.args.get("since") or "").strip()[:40]
        try:
            since = fhir.parse_since(since_text) if since_text else None
        except ValueError as error:
            return response.text(str(error), status=400)
        bundle = await db(fhir.export, tools.engine, since)
        # Recorded before the file is handed over: if the audit cannot be written, nothing is exported.
        await audit(request, "export_fhir", detail=fhir.describe(bundle, since))
        stamp = utcnow().strftime("%Y%m%d-%H%M")
        disposition = f'attachment; filename="escalations-{stamp}.fhir.json"'
        return response.text(json.dumps(bundle, indent=2, ensure_ascii=False), content_type="application/fhir+json",
                             headers={"Content-Disposition": disposition})  # fmt: skip


def attach_sender(
    store: EscalationStore, roster: Patients, item: Escalation, patient: Patient, actor: str, address: str = ""
) -> None:
    """Makes an unverified or unknown sender's conversation the patient's: this escalation, and every
    later message from that sender (an SMS number joins the patient's numbers)."""
    number = phones.sender_number(item.sender_id)
    if number is not None and number not in patient.phones:
        roster.update(actor, patient.id, numbers=[*patient.phones, number], address=address)
    else:
        roster.bind(item.sender_id, patient.id, "attached")
    store.attach(item.id, patient.id, actor)
