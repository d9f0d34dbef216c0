"""The `patients` and `export-fhir` commands of `python -m bot.careteam`.

    patients add --name "Ana Ruiz" --mrn MRN-1 --birth-date 2015-04-02 --phone +16175550123
                 [--phone …] [--language es] [--cycle-start 2026-11-28 …]      prints the patient's id
    patients list [--all]                                   active patients (--all: discharged too)
    patients update MRN [--name …] [--birth-date …] [--phone … (replaces all)] [--language …]
                 [--cycle-start … (replaces all)] [--add-cycle-start DATE]
    patients discharge MRN
    patients link MRN [--days N]      a new personal link (earlier ones stop working); prints the URL
    patients link MRN --revoke        the patient's links stop working
    export-fhir [--since ISO-8601] [--output FILE]     a FHIR R4 Bundle of the escalations (stdout)

Every change is audited under `cli:<login name>`. A bad value gets `error: …` naming the field, and
exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from pathlib import Path

from bot.careteam import phones
from bot.careteam.accounts import Accounts
from bot.careteam.links import Links
from bot.careteam.patients import Patient, PatientError, Patients
from bot.database import create_engine


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = commands.add_parser("patients", help="enrol, list, update, discharge patients; personal links")
    actions = group.add_subparsers(dest="patients_command", required=True)
    add = actions.add_parser("add", help="enrol a patient; prints their id")
    add.add_argument("--name", required=True)
    add.add_argument("--mrn", required=True, help="medical record number")
    add.add_argument("--birth-date", required=True, help="YYYY-MM-DD")
    add.add_argument("--phone", action="append", required=True, help="the patient's or a caregiver's (repeat)")
    add.add_argument("--language", default="en", help="preferred language tag (en, es, …)")
    add.add_argument("--cycle-start", action="append", default=[], help="a treatment cycle's start date (repeat)")
    listing = actions.add_parser("list", help="the enrolled patients")
    listing.add_argument("--all", action="store_true", help="discharged patients too")
    update = actions.add_parser("update", help="change a patient's record")
    update.add_argument("mrn")
    update.add_argument("--name")
    update.add_argument("--birth-date")
    update.add_argument("--phone", action="append", help="replaces every number (repeat)")
    update.add_argument("--language")
    update.add_argument("--cycle-start", action="append", help="replaces every cycle start (repeat)")
    update.add_argument("--add-cycle-start", action="append", default=[], help="adds a cycle start (repeat)")
    actions.add_parser("discharge", help="discharge a patient").add_argument("mrn")
    link = actions.add_parser("link", help="issue (or --revoke) the patient's personal chat link")
    link.add_argument("mrn")
    link.add_argument("--days", type=int, default=None, help="days until it expires (TRIAGE_LINK_DAYS, 180)")
    link.add_argument("--revoke", action="store_true")
    export = commands.add_parser("export-fhir", help="write the escalations as a FHIR R4 Bundle (JSON)")
    export.add_argument("--since", default="", help="only escalations with a message since (ISO 8601)")
    export.add_argument("--output", default="", help="a file (owner-only) instead of stdout")


def run(args: argparse.Namespace) -> int:
    actor = f"cli:{getpass.getuser()}"
    try:
        if args.command == "export-fhir":
            return _export(args, actor)
        engine = create_engine()
        Accounts(engine)  # the audit log's table
        roster = Patients(engine)
        command = args.patients_command
        if command == "add":
            patient = roster.enrol(
                actor, args.name, args.mrn, args.birth_date, args.phone, args.language, args.cycle_start
            )
            print(patient.id)
        elif command == "list":
            for patient in roster.all(include_discharged=args.all):
                print(_line(patient))
        elif command == "update":
            patient = roster.by_mrn(args.mrn)
            starts = args.cycle_start if args.cycle_start is not None else None
            if args.add_cycle_start:
                starts = [*(starts if starts is not None else patient.cycle_starts), *args.add_cycle_start]
            updated = roster.update(actor, patient.id, args.name, args.birth_date, args.phone, args.language, starts)
            print(_line(updated))
        elif command == "discharge":
            patient = roster.discharge(actor, roster.by_mrn(args.mrn).id)
            print(f"discharged {patient.mrn} ({patient.name})")
        else:
            patient = roster.by_mrn(args.mrn)
            if args.revoke:
                count = Links(engine).revoke(actor, patient.id)
                print(f"revoked {count} link(s) of {patient.mrn}")
            else:
                if args.days is not None and args.days < 1:
                    raise PatientError("--days must be 1 or more")
                issued = Links(engine).issue(actor, patient.id, args.days)
                print(issued.url)
                print(f"expires {issued.expires_at.date().isoformat()}; earlier links of {patient.mrn} no longer work",
                      file=sys.stderr)  # fmt: skip
    except (PatientError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _line(patient: Patient) -> str:
    today = dt.date.today()
    where = patient.position(today)
    numbers = ", ".join(phones.display(number) for number in patient.phones)
    return "\t".join((str(patient.id), patient.mrn, patient.name, patient.birth_date.isoformat(), patient.language,
                      patient.status, numbers, where.words if where else "no cycle started"))  # fmt: skip


def _export(args: argparse.Namespace, actor: str) -> int:
    from bot.careteam import fhir

    since = fhir.parse_since(args.since) if args.since else None
    engine = create_engine()
    bundle = fhir.export(engine, since)
    text = json.dumps(bundle, indent=2, ensure_ascii=False)
    Accounts(engine).audit(actor, "export_fhir", detail=fhir.describe(bundle, since))
    if args.output:
        path = Path(args.output)
        path.touch(mode=0o600, exist_ok=True)  # patients' words and identities: owner-only
        path.chmod(0o600)  # also when the file was there before
        path.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0
