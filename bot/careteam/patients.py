"""Patients enrolled by their care team, and which conversations are theirs.

A clinician enrols a patient (name, medical record number, birth date, phone numbers of the patient
and caregivers in E.164, preferred language, the start date of each treatment cycle), edits and
discharges them; every change is written to the audit log in the same transaction, so a change and
its record are durable together or not at all.

Which patient a conversation belongs to (`patient_for`): an SMS conversation (`sms:+1…`) by its
number, among every patient's numbers (a caregiver texting for a child is that child's conversation);
a web conversation when it was opened with the patient's personal link (`links`) or a clinician
attached it to the patient. Anything else belongs to nobody: it is still triaged and escalated, marked
unverified (web) or unknown sender (SMS). The escalation store keys a patient's open escalation by
the patient, so their web and SMS conversations share one open escalation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from bot.careteam import accounts, phones, treatment
from bot.careteam.patient_fields import (
    MAX_MRN,
    MAX_NAME,
    check_birth_date,
    check_date,
    check_language,
    check_mrn,
    check_name,
    check_phones,
)
from bot.careteam.patient_fields import (
    PatientError as PatientError,  # re-exported: callers catch it from here
)
from bot.careteam.store import UTCDateTime, metadata, utcnow

patients = sa.Table(
    "patients",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(MAX_NAME), nullable=False),
    sa.Column("mrn", sa.String(MAX_MRN), nullable=False, unique=True),
    sa.Column("birth_date", sa.Date, nullable=False),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active, discharged
    sa.Column("enrolled_at", UTCDateTime, nullable=False),
    sa.Column("enrolled_by", sa.String(64), nullable=False),
    sa.Column("discharged_at", UTCDateTime, nullable=True),
    sa.Column("discharged_by", sa.String(64), nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# One number belongs to one patient: a text from it must find one patient, never guess between two.
patient_phones = sa.Table(
    "patient_phones",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("patient_id", sa.Integer, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("number", sa.String(20), nullable=False, unique=True),
    sa.Column("position", sa.Integer, nullable=False),  # the order the clinician gave them in
)

patient_cycles = sa.Table(
    "patient_cycles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("patient_id", sa.Integer, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("start_date", sa.Date, nullable=False),
    sa.UniqueConstraint("patient_id", "start_date"),
)

#: Conversations bound to a patient: opened with their personal link, or attached by a clinician.
patient_senders = sa.Table(
    "patient_senders",
    metadata,
    sa.Column("sender_id", sa.String(255), primary_key=True),
    sa.Column("patient_id", sa.Integer, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("bound_at", UTCDateTime, nullable=False),
    sa.Column("how", sa.String(16), nullable=False),  # link, attached
)


@dataclass(frozen=True)
class Patient:
    id: int
    name: str
    mrn: str
    birth_date: dt.date
    language: str
    status: str
    enrolled_at: dt.datetime
    enrolled_by: str
    discharged_at: dt.datetime | None
    phones: tuple[str, ...] = ()
    cycle_starts: tuple[dt.date, ...] = field(default=())

    @property
    def key(self) -> str:
        """How the audit log and notifications name the patient (never their name)."""
        return f"patient:{self.id}"

    def age(self, today: dt.date) -> str:
        """'10 y', or '8 mo' under two years (a dose is by weight, but a child's age is how nurses think)."""
        months = (today.year - self.birth_date.year) * 12 + today.month - self.birth_date.month
        if today.day < self.birth_date.day:
            months -= 1
        return f"{months} mo" if months < 24 else f"{months // 12} y"

    def position(self, today: dt.date) -> treatment.Position | None:
        return treatment.position(self.cycle_starts, today)


class Patients:
    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    # -- enrolment ----------------------------------------------------------------------------------

    def enrol(
        self,
        actor: str,
        name: str,
        mrn: str,
        birth_date: str | dt.date,
        numbers: Sequence[str],
        language: str = "en",
        cycle_starts: Sequence[str | dt.date] = (),
        address: str = "",
    ) -> Patient:
        values = {
            "name": check_name(name),
            "mrn": check_mrn(mrn),
            "birth_date": check_birth_date(birth_date),
            "language": check_language(language),
        }
        checked = check_phones(numbers)
        starts = sorted({check_date(start, "cycle start") for start in cycle_starts})
        now = utcnow()
        with self.engine.begin() as connection:
            if connection.execute(sa.select(patients.c.id).where(patients.c.mrn == values["mrn"])).first():
                raise PatientError(f"a patient with medical record number {values['mrn']} is already enrolled")
            patient_id = connection.execute(
                patients.insert().values(**values, status="active", enrolled_at=now, enrolled_by=actor, updated_at=now)
            ).inserted_primary_key[0]
            self._set_phones(connection, patient_id, checked)
            self._set_cycles(connection, patient_id, starts)
            _audit(connection, actor, "patient_enrolled", patient_id, f"mrn={values['mrn']}", address)
            return self._get(connection, patient_id)

    def update(
        self,
        actor: str,
        patient_id: int,
        name: str | None = None,
        birth_date: str | dt.date | None = None,
        numbers: Sequence[str] | None = None,
        language: str | None = None,
        cycle_starts: Sequence[str | dt.date] | None = None,
        address: str = "",
    ) -> Patient:
        """Changes what is given (None leaves a field as it is); numbers and cycle starts are replaced whole."""
        values: dict[str, object] = {}
        if name is not None:
            values["name"] = check_name(name)
        if birth_date is not None:
            values["birth_date"] = check_birth_date(birth_date)
        if language is not None:
            values["language"] = check_language(language)
        checked = check_phones(numbers) if numbers is not None else None
        starts = sorted({check_date(s, "cycle start") for s in cycle_starts}) if cycle_starts is not None else None
        with self.engine.begin() as connection:
            before = self._get(connection, patient_id)
            connection.execute(
                patients.update().where(patients.c.id == patient_id).values(**values, updated_at=utcnow())
            )
            if checked is not None:
                self._set_phones(connection, patient_id, checked)
            if starts is not None:
                self._set_cycles(connection, patient_id, starts)
            after = self._get(connection, patient_id)
            _audit(connection, actor, "patient_updated", patient_id, _changes(before, after), address)
            return after

    def discharge(self, actor: str, patient_id: int, address: str = "") -> Patient:
        """Marks the patient discharged. Their numbers and links stay theirs (a text after discharge is
        still theirs for the care team to see); the queue says they are discharged."""
        now = utcnow()
        with self.engine.begin() as connection:
            if self._get(connection, patient_id).status == "discharged":
                raise PatientError(f"patient {patient_id} is already discharged")
            connection.execute(
                patients.update()
                .where(patients.c.id == patient_id)
                .values(status="discharged", discharged_at=now, discharged_by=actor, updated_at=now)
            )
            _audit(connection, actor, "patient_discharged", patient_id, "", address)
            return self._get(connection, patient_id)

    def _set_phones(self, connection: sa.engine.Connection, patient_id: int, numbers: list[str]) -> None:
        taken = connection.execute(
            sa.select(patient_phones.c.number, patients.c.mrn)
            .join(patients, patients.c.id == patient_phones.c.patient_id)
            .where(patient_phones.c.number.in_(numbers), patient_phones.c.patient_id != patient_id)
        ).first()
        if taken is not None:
            raise PatientError(f"{taken[0]} already belongs to the patient with medical record number {taken[1]}")
        connection.execute(patient_phones.delete().where(patient_phones.c.patient_id == patient_id))
        for position, number in enumerate(numbers):
            connection.execute(patient_phones.insert().values(patient_id=patient_id, number=number, position=position))

    def _set_cycles(self, connection: sa.engine.Connection, patient_id: int, starts: list[dt.date]) -> None:
        connection.execute(patient_cycles.delete().where(patient_cycles.c.patient_id == patient_id))
        for start in starts:
            connection.execute(patient_cycles.insert().values(patient_id=patient_id, start_date=start))

    # -- reading ------------------------------------------------------------------------------------

    def get(self, patient_id: int) -> Patient:
        with self.engine.connect() as connection:
            return self._get(connection, patient_id)

    def by_mrn(self, mrn: str) -> Patient:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(patients.c.id).where(patients.c.mrn == (mrn or "").strip())).first()
            if row is None:
                raise PatientError(f"no patient with medical record number {(mrn or '').strip()[:MAX_MRN]!r}")
            return self._get(connection, row[0])

    def all(self, include_discharged: bool = True) -> list[Patient]:
        statement = sa.select(patients.c.id).order_by(patients.c.name, patients.c.id)
        if not include_discharged:
            statement = statement.where(patients.c.status == "active")
        with self.engine.connect() as connection:
            return [self._get(connection, row[0]) for row in connection.execute(statement)]

    def _get(self, connection: sa.engine.Connection, patient_id: int) -> Patient:
        return load(connection, patient_id)

    # -- conversations ------------------------------------------------------------------------------

    def bind(self, sender_id: str, patient_id: int, how: str) -> None:
        """Makes `sender_id` the patient's conversation (a later binding of the same sender wins)."""
        with self.engine.begin() as connection:
            bind(connection, sender_id, patient_id, how)

    def senders(self, patient_id: int) -> list[str]:
        """Every conversation key of the patient: each number's SMS conversation and the bound ones."""
        patient = self.get(patient_id)
        with self.engine.connect() as connection:
            bound = connection.execute(
                sa.select(patient_senders.c.sender_id)
                .where(patient_senders.c.patient_id == patient_id)
                .order_by(patient_senders.c.bound_at)
            ).scalars()
            return [*(f"sms:{number}" for number in patient.phones), *bound]


def load(connection: sa.engine.Connection, patient_id: int) -> Patient:
    """The patient with their numbers and cycle starts, or PatientError when there is none."""
    row = connection.execute(sa.select(patients).where(patients.c.id == patient_id)).first()
    if row is None:
        raise PatientError(f"no patient {patient_id}")
    numbers = connection.execute(
        sa.select(patient_phones.c.number)
        .where(patient_phones.c.patient_id == patient_id)
        .order_by(patient_phones.c.position)
    ).scalars()
    starts = connection.execute(
        sa.select(patient_cycles.c.start_date)
        .where(patient_cycles.c.patient_id == patient_id)
        .order_by(patient_cycles.c.start_date)
    ).scalars()
    values = row._mapping
    return Patient(
        **{name: values[name] for name in Patient.__dataclass_fields__ if name in values},
        phones=tuple(numbers),
        cycle_starts=tuple(starts),
    )


def bind(connection: sa.engine.Connection, sender_id: str, patient_id: int, how: str) -> None:
    connection.execute(patient_senders.delete().where(patient_senders.c.sender_id == sender_id))
    connection.execute(
        patient_senders.insert().values(sender_id=sender_id, patient_id=patient_id, bound_at=utcnow(), how=how)
    )


def patient_for(connection: sa.engine.Connection, sender_id: str) -> int | None:
    """The enrolled patient whose conversation `sender_id` is, or None (see the module docstring)."""
    bound = connection.execute(
        sa.select(patient_senders.c.patient_id).where(patient_senders.c.sender_id == sender_id)
    ).first()
    if bound is not None:
        return int(bound[0])
    number = phones.sender_number(sender_id)
    if number is None:
        return None
    owner = connection.execute(sa.select(patient_phones.c.patient_id).where(patient_phones.c.number == number)).first()
    return None if owner is None else int(owner[0])


def _audit(
    connection: sa.engine.Connection, actor: str, action: str, patient_id: int, detail: str, address: str
) -> None:
    connection.execute(
        accounts.audit_log.insert().values(
            at=utcnow(),
            username=actor[:64],
            action=action,
            patient=f"patient:{patient_id}",
            detail=detail[:2000] or None,
            address=address[:64] or None,
        )
    )


def _changes(before: Patient, after: Patient) -> str:
    """Which fields changed, old and new (the audit log is behind the admin login, like the records)."""
    names = ("name", "birth_date", "language", "phones", "cycle_starts")
    changed = [
        f"{name}: {_shown(getattr(before, name))} -> {_shown(getattr(after, name))}"
        for name in names
        if getattr(before, name) != getattr(after, name)
    ]
    return "; ".join(changed) or "no change"


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)
