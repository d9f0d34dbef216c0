"""Patients in the care-team app, over HTTP against a real server process and in a real browser:
enrolment by form (CSRF-protected, audited, clear errors), names, MRN, age and tap-to-call numbers in
the queue and on the escalation page with where the patient is in treatment, attaching an unknown
sender, acknowledging with the number called back, personal links issued once, and the FHIR export
for admins only. Screenshots under build/test-output/."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from bot.careteam.patients import Patients
from bot.database import create_engine
from tests.conftest import ROOT, SHOTS
from tests.test_careteam_app import PASSWORD, App, Client, triage
from tools import serve

pytestmark = pytest.mark.integration
ANA = "+16175550123"
ANA_MOTHER = "+16175550188"
STRANGER = "+16175550199"
TODAY = dt.date.today()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    running = App(tmp_path_factory.mktemp("careteam-patients"))
    for name, role in (("nurse", "clinician"), ("admin", "admin")):
        add = subprocess.run(
            [sys.executable, "-m", "bot.careteam", "add-user", name, "--role", role, "--password-stdin"],
            input=PASSWORD + "\n", text=True, capture_output=True, env=running.env, cwd=ROOT, check=False,
        )  # fmt: skip
        assert add.returncode == 0, add.stderr
    roster = Patients(create_engine(running.url))
    # Day 2 of cycle 1: the monograph's hospital days.
    roster.enrol("setup", "Ana Ruiz", "MRN-1", "2015-04-02", [ANA, ANA_MOTHER], "es", [TODAY - dt.timedelta(days=1)])
    running.store.record(f"sms:{ANA_MOTHER}", "sms", "m1", "she had a fit", triage("emergency", "seizures", "fit"))
    running.store.record(f"sms:{STRANGER}", "sms", "m2", "temp 39 and shaking", triage("call_now", "fever", "39"))
    process = serve.start_careteam(serve.Ports(0, 0, running.port), running.env, running.db.parent / "careteam.log")
    try:
        yield running
    finally:
        serve.stop(process)


def logged_in(app: App, user: str = "nurse") -> Client:
    client = app.client()
    assert client.login(user) == 302
    return client


def audit_actions(app: App, patient: str) -> list[tuple[str, str]]:
    return [(e["username"], e["action"]) for e in reversed(app.accounts.audit_entries(patient=patient))]


def test_the_queue_names_the_patient_with_tap_to_call_numbers_and_flags_an_unknown_sender(app: App) -> None:
    _, _, page = logged_in(app).get("/")
    age = Patients(create_engine(app.url)).get(1).age(TODAY)
    assert "Ana Ruiz" in page and "MRN-1" in page and f" · {age}" in page
    assert f'wrote from <a class="tel" href="tel:{ANA_MOTHER}">' in page  # the number that wrote
    assert f'href="tel:{ANA}"' in page and f'href="tel:{ANA_MOTHER}"' in page
    assert "cycle 1, day 2" in page and "hospital days" in page
    assert "Unknown sender" in page


def test_the_escalation_page_shows_who_wrote_how_to_call_and_the_hospital_days(app: App) -> None:
    _, _, page = logged_in(app).get("/escalations/1")
    assert "<h1>" in page and "Ana Ruiz</h1>" in page
    assert f'<a class="tel" href="tel:{ANA_MOTHER}">{ANA_MOTHER}</a> (SMS)' in page  # the number that wrote
    assert page.count('class="tel call"') == 2  # every number of the patient
    assert "The monograph recommends hospital care for the first 3 days of the first cycle" in page


def test_enrolment_by_form_needs_the_csrf_token_and_is_audited(app: App) -> None:
    client = logged_in(app)
    form = {"name": "Leo Park", "mrn": "MRN-2", "birth_date": "2019-06-30", "phones": "+44 20 7946 0000\n",
            "language": "en", "cycle_starts": "2026-10-01"}  # fmt: skip
    status, _, _ = client.post("/patients", form)
    assert status == 403
    status, headers, _ = client.post("/patients", {**form, "csrf_token": client.csrf("/patients")})
    assert status == 302 and re.fullmatch(r"/patients/\d+", headers["location"])
    patient_key = "patient:" + headers["location"].rsplit("/", 1)[1]
    assert audit_actions(app, patient_key) == [("nurse", "patient_enrolled")]
    _, _, page = client.get(headers["location"])
    assert "Leo Park" in page and 'href="tel:+442079460000"' in page


def test_a_bad_number_in_the_form_gets_a_clear_error(app: App) -> None:
    client = logged_in(app)
    form = {"name": "Mia Cole", "mrn": "MRN-3", "birth_date": "2016-01-01", "phones": "+15551234567",
            "csrf_token": client.csrf("/patients")}  # fmt: skip
    status, _, page = client.post("/patients", form)
    assert status == 400
    assert "phone: &#39;+15551234567&#39; is not a number in use in country +1" in page
    assert 'value="Mia Cole"' in page  # what was typed is kept


def test_an_unknown_sender_is_attached_to_a_patient_and_later_texts_are_theirs(app: App) -> None:
    client = logged_in(app)
    status, headers, _ = client.post(
        "/escalations/2/attach", {"mrn": "MRN-1", "csrf_token": client.csrf("/escalations/2")}
    )
    assert (status, headers["location"]) == (302, "/escalations/2")
    assert app.store.get(2).patient_id == 1
    assert ("nurse", "attach_sender") in audit_actions(app, "patient:1")
    assert STRANGER in Patients(create_engine(app.url)).get(1).phones
    status, headers, _ = client.post(
        "/escalations/1/attach", {"mrn": "MRN-404", "csrf_token": client.csrf("/escalations/1")}
    )
    assert headers["location"] == "/escalations/1?error=not_attached"


def test_acknowledging_records_who_called_back_on_which_number_and_when(app: App) -> None:
    client = logged_in(app)
    form = {
        "called": ANA_MOTHER,
        "note": "mother says she is sleeping now",
        "csrf_token": client.csrf("/escalations/1"),
    }
    assert client.post("/escalations/1/acknowledge", form)[0] == 302
    item = app.store.get(1)
    assert item.acknowledged_by == "nurse" and item.acknowledged_at is not None
    notes = [event["note"] for event in app.store.history(1) if event["kind"] == "acknowledged"]
    assert notes == [f"Called the patient back on {ANA_MOTHER}. mother says she is sleeping now"]


def test_a_personal_link_is_shown_once_and_kept_only_as_a_hash(app: App) -> None:
    client = logged_in(app)
    status, _, page = client.post("/patients/1/link", {"csrf_token": client.csrf("/patients/1")})
    assert status == 200
    token = re.search(r'id="personal-link" href="[^"]*#p=([A-Za-z0-9_-]{43})"', page)
    assert token, page
    assert f'href="sms:{ANA}?&amp;body=' in page  # texted from the clinician's phone
    _, _, again = client.get("/patients/1")
    assert token.group(1) not in again and "issued" in again
    entries = app.accounts.audit_entries(patient="patient:1")
    assert any(e["action"] == "link_issued" for e in entries)
    assert all(token.group(1) not in (e["detail"] or "") for e in entries)
    assert token.group(1).encode() not in app.db.read_bytes()


def test_edit_revoke_and_discharge_from_the_patient_page_are_audited(app: App) -> None:
    client = logged_in(app)
    form = {"name": "Leo Park", "mrn": "MRN-9", "birth_date": "2019-06-30", "phones": "+16175550177",
            "csrf_token": client.csrf("/patients")}  # fmt: skip
    location = client.post("/patients", form)[1]["location"]
    patient_id = int(location.rsplit("/", 1)[1])
    edit = {"name": "Leo Park", "birth_date": "2019-06-30", "phones": "+16175550177\n+16175550178",
            "language": "ko", "cycle_starts": "2026-11-01", "csrf_token": client.csrf(location)}  # fmt: skip
    assert client.post(f"{location}/edit", edit)[0] == 302
    bad = {**edit, "phones": "+1 555", "csrf_token": client.csrf(location)}
    status, _, page = client.post(f"{location}/edit", bad)
    assert status == 400 and "too many or too few digits" in page
    assert client.post(f"{location}/link", {"csrf_token": client.csrf(location)})[0] == 200
    assert client.post(f"{location}/revoke-links", {"csrf_token": client.csrf(location)})[0] == 302
    assert "revoked" in client.get(location)[2]
    assert client.post(f"{location}/discharge", {"csrf_token": client.csrf(location)})[0] == 302
    patient = Patients(create_engine(app.url)).get(patient_id)
    assert (patient.phones, patient.language, patient.status) == (("+16175550177", "+16175550178"), "ko", "discharged")
    assert [action for _, action in audit_actions(app, f"patient:{patient_id}") if action != "view_patient"] == [
        "patient_enrolled", "patient_updated", "update_refused", "link_issued", "link_revoked", "patient_discharged",
    ]  # fmt: skip


def test_the_fhir_export_is_for_admins_and_audited(app: App) -> None:
    assert logged_in(app, "nurse").get("/export.fhir.json")[0] == 403
    status, headers, body = logged_in(app, "admin").get("/export.fhir.json")
    assert status == 200 and headers["content-type"].startswith("application/fhir+json")
    bundle = json.loads(body)
    assert bundle["resourceType"] == "Bundle"
    entries = app.accounts.audit_entries(username="admin")
    assert any(e["action"] == "export_fhir" and "Patient" in (e["detail"] or "") for e in entries)


def test_in_a_browser_the_nurse_sees_names_and_taps_to_call(app: App, browser: Browser) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    base = f"http://localhost:{app.port}"
    page.goto(f"{base}/login")
    page.get_by_label("Username").fill("nurse")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    row = page.locator("#queue-rows tr").filter(has_text="Ana Ruiz").first
    expect(row).to_contain_text("MRN-1")
    expect(row.get_by_role("link", name="+1 617-555-0123")).to_have_attribute("href", f"tel:{ANA}")
    page.screenshot(path=str(SHOTS / "careteam-queue-patients.png"), full_page=True)
    row.get_by_role("link", name="Ana Ruiz").click()
    card = page.get_by_role("region", name="Patient")
    expect(card.get_by_role("link", name="+1 617-555-0188")).to_have_attribute("href", f"tel:{ANA_MOTHER}")
    expect(card.get_by_role("note")).to_contain_text("hospital care for the first 3 days")
    page.screenshot(path=str(SHOTS / "careteam-escalation-patient.png"), full_page=True)
    page.get_by_role("link", name="Ana Ruiz").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Ana Ruiz")
    expect(page.locator(".transcript")).to_be_visible()
    page.screenshot(path=str(SHOTS / "careteam-patient-page.png"), full_page=True)
    context.close()


def test_a_spanish_message_shows_the_patients_words_with_the_english_term_and_its_language(app: App) -> None:
    from bot.triage import default_triager

    text = "mi hijo tiene calentura y escalofríos"
    read = default_triager().triage(text).to_dict()
    assert read["language"] == "es"
    change = app.store.record("sms:+16175550177", "sms", "m-es", text, read)
    _, _, page = logged_in(app).get(f"/escalations/{change.escalation.id}")
    assert "read in Spanish" in page
    assert "calentura" in page and "fever" in page and "chills" in page
