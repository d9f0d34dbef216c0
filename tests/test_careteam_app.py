"""The care-team app over HTTP, as a browser or an attacker would reach it: a real server process on a
database of its own. Every page needs a login; wrong passwords and too many of them are refused;
changes need the session's CSRF token and this site's origin; admins alone read the audit log, which
records every view and action; the CSV export cannot smuggle formulas into a spreadsheet."""

from __future__ import annotations

import csv
import html
import http.client
import io
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.careteam.accounts import Accounts
from bot.careteam.store import EscalationStore
from bot.database import create_engine
from tests.conftest import ROOT, free_port
from tools import serve

pytestmark = pytest.mark.integration
PASSWORD = "a long enough password"


def triage(level: str, term: str = "", span: str = "") -> dict[str, object]:
    if not term:
        return {"level": level, "symptoms": []}
    return {"level": level, "symptoms": [{"term": term, "level": level, "span": span, "start": 0, "end": len(span)}]}


class Client:
    """A cookie-keeping HTTP client that does not follow redirects (so each answer can be checked)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.last_set_cookie: list[str] = []

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        connection = http.client.HTTPConnection("localhost", self.port, timeout=30)
        sent = {"Host": f"localhost:{self.port}", **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=sent)
        answer = connection.getresponse()
        text = answer.read().decode()
        self.last_set_cookie = answer.headers.get_all("Set-Cookie") or []
        for line in self.last_set_cookie:
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if value and "expires=Thu, 01 Jan 1970" not in line and "Max-Age=0" not in line:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, text

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], str]:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, form: dict[str, str], **headers: str) -> tuple[int, dict[str, str], str]:
        return self.request("POST", path, form, headers)

    def login(self, username: str, password: str = PASSWORD) -> int:
        _, _, page = self.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, page
        status, _, _ = self.post("/login", {"csrf_token": token.group(1), "username": username, "password": password})
        return status

    def csrf(self, path: str = "/") -> str:
        _, _, page = self.get(path)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, page
        return html.unescape(token.group(1))


class App:
    def __init__(self, workdir: Path) -> None:
        self.db = workdir / "triage.db"
        self.url = f"sqlite:///{self.db}"
        self.port = free_port()
        self.env = serve.rasa_env(serve.Ports(rasa=free_port(), actions=free_port(), careteam=self.port), db=self.db)
        self.store = EscalationStore(self.url)
        self.accounts = Accounts(create_engine(self.url))

    def client(self) -> Client:
        return Client(self.port)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    running = App(tmp_path_factory.mktemp("careteam"))
    for name, role in (("nurse", "clinician"), ("admin", "admin"), ("locked", "clinician")):
        add = subprocess.run(
            [sys.executable, "-m", "bot.careteam", "add-user", name, "--role", role, "--password-stdin"],
            input=PASSWORD + "\n", text=True, capture_output=True, env=running.env, cwd=ROOT, check=False,
        )  # fmt: skip
        assert add.returncode == 0, add.stderr
    store = running.store
    store.record("sms:+15550001", "sms", "m1", "my son has a fever", triage("call_now", "fever", "fever"))
    store.record("=HYPERLINK(evil)", "web", "m2", "he had a seizure", triage("emergency", "seizures", "seizure"))
    process = serve.start_careteam(serve.Ports(0, 0, running.port), running.env, running.db.parent / "careteam.log")
    try:
        yield running
    finally:
        serve.stop(process)


PAGES = ["/", "/queue/rows", "/export.csv", "/escalations/1", "/admin"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_login(app: App, path: str) -> None:
    status, headers, _ = app.client().get(path)
    assert (status, headers["location"]) == (302, "/login")
    status, _, _ = app.client().get(path, **{"X-Requested-With": "fetch"})
    assert status == 401


def test_changes_need_a_login(app: App) -> None:
    status, _, _ = app.client().post("/escalations/1/acknowledge", {"note": "x", "csrf_token": "x"})
    assert status == 401
    assert app.store.get(1).status == "new"


def test_a_wrong_password_is_refused_and_a_right_one_gives_a_secure_session_cookie(app: App) -> None:
    client = app.client()
    assert client.login("nurse", "wrong password!!") == 401
    assert client.login("nurse") == 302
    cookie = next(line for line in client.last_set_cookie if line.startswith("triage_careteam_session="))
    assert {"HttpOnly", "SameSite=Strict", "Secure"} <= {part.strip() for part in cookie.split(";")}
    status, _, page = client.get("/")
    assert status == 200 and "sms:+15550001" in page


def test_the_login_form_needs_its_own_token(app: App) -> None:
    status, _, _ = app.client().post("/login", {"username": "nurse", "password": PASSWORD})
    assert status == 403


def test_logins_are_throttled_after_five_failures(app: App) -> None:
    client = app.client()
    for _ in range(5):
        assert client.login("locked", "not the password") == 401
    assert client.login("locked") == 429  # even the right password, while throttled
    entries = app.accounts.audit_entries(username="locked")
    assert [e["action"] for e in entries][:2] == ["login_throttled", "login_failed"]


def test_a_change_without_the_csrf_token_or_from_another_site_is_refused(app: App) -> None:
    client = app.client()
    assert client.login("nurse") == 302
    assert client.post("/escalations/1/acknowledge", {"note": "seen"})[0] == 403
    assert client.post("/escalations/1/acknowledge", {"note": "seen", "csrf_token": "forged"})[0] == 403
    token = client.csrf()
    assert client.post("/escalations/1/acknowledge", {"csrf_token": token}, Origin="http://evil.example")[0] == 403
    assert app.store.get(1).status == "new"
    status, headers, _ = client.post("/escalations/1/acknowledge", {"csrf_token": token, "note": "calling"})
    assert (status, headers["location"]) == (302, "/escalations/1")
    assert app.store.get(1).status == "acknowledged"
    assert app.store.get(1).acknowledged_by == "nurse"


def test_resolving_needs_a_note(app: App) -> None:
    client = app.client()
    assert client.login("nurse") == 302
    token = client.csrf()
    status, headers, _ = client.post("/escalations/2/resolve", {"csrf_token": token, "note": " "})
    assert status == 302 and "error=" in headers["location"]
    assert app.store.get(2).status == "new"


def test_logout_ends_the_session(app: App) -> None:
    client = app.client()
    assert client.login("nurse") == 302
    kept = dict(client.cookies)
    assert client.post("/logout", {"csrf_token": client.csrf()})[0] == 302
    client.cookies = kept  # someone who copied the cookie before logout
    assert client.get("/")[0] == 302


def test_the_queue_puts_emergencies_first_and_filters(app: App) -> None:
    client = app.client()
    assert client.login("nurse") == 302
    _, _, page = client.get("/")
    assert page.index("=HYPERLINK(evil)") < page.index("sms:+15550001")
    _, _, page = client.get("/?channel=sms")
    assert "sms:+15550001" in page and "HYPERLINK" not in page
    _, _, page = client.get("/?q=seizure")
    assert "HYPERLINK" in page and "sms:+15550001" not in page
    _, _, rows = client.get("/queue/rows?level=call_now", **{"X-Requested-With": "fetch"})
    assert "sms:+15550001" in rows and "<html" not in rows


def test_the_csv_export_escapes_formulas_and_is_audited(app: App) -> None:
    client = app.client()
    assert client.login("nurse") == 302
    status, headers, body = client.get("/export.csv?status=all")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert {row["patient"] for row in rows} == {"sms:+15550001", "'=HYPERLINK(evil)"}
    assert app.accounts.audit_entries(username="nurse")[0]["action"] == "export_csv"


def test_only_admins_read_the_audit_log_and_it_names_who_viewed_which_patient(app: App) -> None:
    nurse = app.client()
    assert nurse.login("nurse") == 302
    assert nurse.get("/escalations/1")[0] == 200
    assert nurse.get("/admin")[0] == 403
    admin = app.client()
    assert admin.login("admin") == 302
    status, _, page = admin.get("/admin?patient=sms%3A%2B15550001")
    assert status == 200
    assert "view_transcript" in page and "nurse" in page
    views = [e for e in app.accounts.audit_entries("nurse") if e["action"] == "view_transcript"]
    assert any(e["patient"] == "sms:+15550001" and e["escalation_id"] == 1 for e in views)


def test_pages_forbid_framing_caching_and_inline_script(app: App) -> None:
    _, headers, _ = app.client().get("/login")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "'unsafe-inline'" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"


def test_patient_words_are_escaped_in_pages(app: App) -> None:
    app.store.record("<script>alert(1)</script>", "web", "m-xss", "<b>help</b>", triage("unclear"))
    client = app.client()
    assert client.login("nurse") == 302
    _, _, page = client.get("/?status=all")
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_unknown_escalations_and_bad_requests_get_plain_answers(app: App) -> None:
    client = app.client()
    assert client.login("nurse") == 302
    status, _, body = client.get("/escalations/999999")
    assert status == 404 and "Traceback" not in body
    status, _, body = client.request("POST", "/login", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403 and "Traceback" not in body


def test_a_session_ends_after_the_idle_time(tmp_path: Path) -> None:
    quick = App(tmp_path)
    quick.env["TRIAGE_CARETEAM_IDLE_MINUTES"] = "0.05"  # 3 s
    quick.accounts.add_user("nurse", PASSWORD)
    process = serve.start_careteam(serve.Ports(0, 0, quick.port), quick.env, tmp_path / "careteam.log")
    try:
        client = quick.client()
        assert client.login("nurse") == 302
        assert client.get("/")[0] == 200
        time.sleep(4)
        status, headers, _ = client.get("/")
        assert (status, headers["location"]) == (302, "/login?ended=session")
    finally:
        serve.stop(process)
