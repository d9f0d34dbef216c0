"""The care team sees everything, and only the care team does (issue 12, part 5), over HTTP against the
real app process:

- wrong passwords throttle the guesser's address, never the clinician elsewhere, and behind a proxy
  (SANIC_PROXIES_COUNT) the forwarded client address counts, not the proxy's;
- the queue's auto-refresh does not keep a session alive, and the login page says the session ended;
- every request that shows patient rows, every refusal and every export (and its failure) is audited
  with the client's address;
- the escalation page's error banner shows fixed messages only;
- CSV cells cannot become formulas, whatever characters hide the "=", and a NUL is no 500;
- log records of every server are one line each, whatever a sender id holds.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, expect

from bot.careteam.app import CHANGE_ERRORS, LOGIN_NOTICES, _cell
from bot.careteam.store import escalations
from bot.logging_safety import installed, visible
from tests.conftest import ROOT, SHOTS
from tests.test_careteam_app import PASSWORD, App, Client, triage
from tools import serve

pytestmark = pytest.mark.integration
GUESSER = "203.0.113.5"
WARD = "10.20.30.40"


class ClientAt(Client):
    """A client behind the proxy: the proxy names it in X-Forwarded-For (`address`)."""

    def __init__(self, port: int, address: str) -> None:
        super().__init__(port)
        self.address = address

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        return super().request(method, path, form, {"X-Forwarded-For": self.address, **(headers or {})})


def add_users(app: App, *names: str, role: str = "clinician") -> None:
    for name in names:
        add = subprocess.run(
            [sys.executable, "-m", "bot.careteam", "add-user", name, "--role", role, "--password-stdin"],
            input=PASSWORD + "\n", text=True, capture_output=True, env=app.env, cwd=ROOT, check=False,
        )  # fmt: skip
        assert add.returncode == 0, add.stderr


def start(app: App, **env: str) -> subprocess.Popen[bytes]:
    app.env.update(env)
    return serve.start_careteam(serve.Ports(0, 0, app.port), app.env, app.db.parent / "careteam.log")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app behind one proxy (SANIC_PROXIES_COUNT=1), as `make cluster` and a hospital run it."""
    running = App(tmp_path_factory.mktemp("proxied"))
    add_users(running, "nurse", "guessed", "other")
    add_users(running, "admin", role="admin")
    running.store.record("sms:+15550001", "sms", "m1", "my son has a fever", triage("call_now", "fever", "fever"))
    process = start(running, SANIC_PROXIES_COUNT="1")
    try:
        yield running
    finally:
        serve.stop(process)


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app reached directly (no proxy setting): a forwarded header is anyone's to write."""
    running = App(tmp_path_factory.mktemp("direct"))
    add_users(running, "nurse", "guessed")
    running.store.record("web:p1", "web", "m1", "he had a seizure", triage("emergency", "seizures", "seizure"))
    process = start(running)
    try:
        yield running
    finally:
        serve.stop(process)


def actions(app: App, username: str) -> list[tuple[str, str | None]]:
    return [(entry["action"], entry["address"]) for entry in app.accounts.audit_entries(username=username)]


# -- guessing passwords --------------------------------------------------------------------------


def test_five_wrong_passwords_from_elsewhere_do_not_lock_the_clinician_out(proxied: App) -> None:
    guesser = ClientAt(proxied.port, GUESSER)
    for _ in range(5):
        assert guesser.login("guessed", "not the password") == 401
    status, headers, page = guesser.request("POST", "/login", *_login_form(guesser, "guessed", PASSWORD))
    assert status == 429, "the guesser is refused, even with the right password"
    assert 0 < int(headers["retry-after"]) <= 60 and "wait" in page
    clinician = ClientAt(proxied.port, WARD)
    assert clinician.login("guessed") == 302, "the clinician at the ward is not locked out"
    assert clinician.get("/")[0] == 200
    assert ("login_throttled", GUESSER) in actions(proxied, "guessed")
    assert ("login_failed", GUESSER) in actions(proxied, "guessed")
    assert ("login", WARD) in actions(proxied, "guessed")


def test_behind_a_proxy_a_flood_from_one_client_refuses_that_client_only(proxied: App) -> None:
    flooder = ClientAt(proxied.port, "198.51.100.77")
    for number in range(20):
        assert flooder.login(f"guess{number}", "not the password") == 401
    assert flooder.login("other") == 429
    assert ClientAt(proxied.port, "198.51.100.78").login("other") == 302, "everyone else behind the proxy logs in"


def test_without_the_proxy_setting_a_forged_forwarded_address_changes_nothing(direct: App) -> None:
    for number in range(5):
        assert ClientAt(direct.port, f"192.0.2.{number}").login("guessed", "not the password") == 401
    assert ClientAt(direct.port, "192.0.2.200").login("guessed") == 429, "all five counted for 127.0.0.1"
    assert {address for _, address in actions(direct, "guessed")} == {"127.0.0.1"}


def test_unknown_names_get_the_same_answers(direct: App) -> None:
    answers = []
    for name in ("nurse", "no.such.nurse"):
        client = ClientAt(direct.port, "ignored")
        status, _, page = client.request("POST", "/login", *_login_form(client, name, "not the password"))
        answers.append((status, page.replace(client_token(page), "")))
    assert answers[0] == answers[1]


def _login_form(client: Client, username: str, password: str) -> tuple[dict[str, str]]:
    _, _, page = client.get("/login")
    return ({"csrf_token": client_token(page), "username": username, "password": password},)


def client_token(page: str) -> str:
    marker = 'name="csrf_token" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


# -- sessions ------------------------------------------------------------------------------------


def test_the_auto_refresh_does_not_keep_an_unattended_screen_logged_in(tmp_path: Path) -> None:
    quick = App(tmp_path)
    quick.accounts.add_user("nurse", PASSWORD)
    quick.store.record("sms:+15550001", "sms", "m1", "my son has a fever", triage("call_now", "fever", "fever"))
    process = start(quick, TRIAGE_CARETEAM_IDLE_MINUTES="0.05")  # 3 s
    try:
        unattended, working = quick.client(), quick.client()
        assert unattended.login("nurse") == 302 and working.login("nurse") == 302
        refresh = {"X-Requested-With": "fetch", "X-Triage-Auto-Refresh": "1"}
        started = time.monotonic()
        ended_after = None
        while time.monotonic() - started < 15:  # five idle times: without the fix it never ends
            status, _, rows = unattended.get("/queue/rows", **refresh)
            if status == 401:
                ended_after = time.monotonic() - started
                break
            assert status == 200 and "sms:+15550001" in rows
            assert working.get("/")[0] == 200, "a user who does something stays logged in"
            time.sleep(0.5)
        assert ended_after is not None, "the auto-refresh kept the session alive"
        assert ended_after >= 2.5, "not before the idle time"
        assert working.get("/")[0] == 200

        # The page then goes to the login page, which says why.
        status, headers, _ = unattended.get("/")
        assert (status, headers["location"]) == (302, "/login?ended=session")
        _, _, page = unattended.get(headers["location"])
        assert LOGIN_NOTICES["session"] in page
        _, _, page = quick.client().get("/login")
        assert LOGIN_NOTICES["session"] not in page, "a first visit is not told a session ended"
    finally:
        serve.stop(process)


def test_an_unattended_queue_page_logs_itself_out_and_says_so(browser: Browser, tmp_path: Path) -> None:
    """In a real browser: the queue page refreshing itself every second does not keep the session
    alive past the idle time; the page then shows the login form with the reason."""
    quick = App(tmp_path)
    quick.accounts.add_user("nurse", PASSWORD)
    quick.store.record("sms:+15550001", "sms", "m1", "my son has a fever", triage("call_now", "fever", "fever"))
    process = start(quick, TRIAGE_CARETEAM_IDLE_MINUTES="0.05", TRIAGE_CARETEAM_REFRESH_SECONDS="1")
    context = browser.new_context()
    try:
        page = context.new_page()
        base = f"http://localhost:{quick.port}"
        page.goto(f"{base}/login")
        page.get_by_label("Username").fill("nurse")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#queue-rows")).to_contain_text("sms:+15550001")
        expect(page).to_have_url(f"{base}/login?ended=session", timeout=10_000)
        expect(page.get_by_role("status")).to_have_text(LOGIN_NOTICES["session"])
        expect(page.get_by_text("sms:+15550001")).to_have_count(0)
        page.screenshot(path=str(SHOTS / "careteam-session-ended.png"), full_page=True)
    finally:
        context.close()
        serve.stop(process)


# -- the audit log -------------------------------------------------------------------------------


def test_a_search_of_the_queue_rows_is_audited_with_the_address(proxied: App) -> None:
    client = ClientAt(proxied.port, WARD)
    assert client.login("nurse") == 302
    status, _, rows = client.get("/queue/rows?q=%2B15550001", **{"X-Triage-Auto-Refresh": "1"})
    assert status == 200 and "sms:+15550001" in rows
    searches = [e for e in proxied.accounts.audit_entries(username="nurse") if "+15550001" in (e["detail"] or "")]
    assert [(e["action"], e["address"]) for e in searches] == [("view_queue_rows", WARD)]

    # The page refreshing itself is one entry per view, not one every 15 seconds.
    for _ in range(3):
        client.get("/queue/rows?q=%2B15550001", **{"X-Triage-Auto-Refresh": "1"})
    after = [e for e in proxied.accounts.audit_entries(username="nurse") if "+15550001" in (e["detail"] or "")]
    assert len(after) == 1
    client.get("/queue/rows?q=fever")
    assert "fever" in (proxied.accounts.audit_entries(username="nurse")[0]["detail"] or "")


def test_refusals_are_audited_with_the_address(proxied: App) -> None:
    client = ClientAt(proxied.port, "198.51.100.23")
    assert client.login("nurse") == 302
    assert client.get("/admin")[0] == 403
    assert client.post("/escalations/1/acknowledge", {"csrf_token": "forged"})[0] == 403
    token = client.csrf()
    assert client.post("/escalations/1/acknowledge", {"csrf_token": token}, Origin="http://evil.example")[0] == 403
    entries = [e for e in proxied.accounts.audit_entries(username="nurse") if e["action"] != "view_queue"][:3]
    assert [(e["action"], e["detail"], e["address"]) for e in entries] == [
        ("origin_refused", "/escalations/1/acknowledge", "198.51.100.23"),
        ("csrf_refused", "/escalations/1/acknowledge", "198.51.100.23"),
        ("denied", "/admin", "198.51.100.23"),
    ]
    assert proxied.store.get(1).status == "new"
    assert client.request("POST", "/login", {"username": "nurse", "password": PASSWORD})[0] == 403
    assert proxied.accounts.audit_entries(username="nurse")[0]["action"] == "login_refused"
    assert proxied.accounts.audit_entries(username="nurse")[0]["address"] == "198.51.100.23"


def test_a_failed_export_is_audited_as_failed_and_exports_nothing(tmp_path: Path) -> None:
    broken = App(tmp_path)
    broken.accounts.add_user("nurse", PASSWORD)
    broken.store.record("sms:+15550001", "sms", "m1", "my son has a fever", triage("call_now", "fever", "fever"))
    process = start(broken)
    try:
        client = broken.client()
        assert client.login("nurse") == 302
        with broken.store.engine.begin() as connection:  # the database loses the table under the app
            connection.execute(sa.text("ALTER TABLE escalations RENAME TO escalations_away"))
        status, _, body = client.get("/export.csv?status=all")
        assert status == 500 and "+15550001" not in body
        [entry] = [e for e in broken.accounts.audit_entries(username="nurse") if e["action"].startswith("export")]
        assert entry["action"] == "export_csv_failed" and entry["address"] == "127.0.0.1"
        assert "OperationalError" in entry["detail"]
    finally:
        serve.stop(process)


# -- the error banner ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["Call 555-0199 now, the care team is unavailable", "<b>urgent</b>", "note_required\n", "not_saved "]
)
def test_the_error_banner_never_shows_text_from_the_address_bar(direct: App, text: str) -> None:
    client = direct.client()
    assert client.login("nurse") == 302
    status, _, page = client.get("/escalations/1?error=" + urllib.parse.quote(text))
    assert status == 200
    assert 'role="alert"' not in page
    assert text.strip() not in html.unescape(page)


def test_a_refused_change_shows_its_fixed_message(direct: App) -> None:
    client = direct.client()
    assert client.login("nurse") == 302
    status, headers, _ = client.post("/escalations/1/resolve", {"csrf_token": client.csrf(), "note": " "})
    assert (status, headers["location"]) == (302, "/escalations/1?error=note_required")
    _, _, page = client.get(headers["location"])
    assert CHANGE_ERRORS["note_required"] in page
    assert direct.accounts.audit_entries(username="nurse")[1]["action"] == "resolve_refused"


# -- CSV -----------------------------------------------------------------------------------------

HIDDEN_FORMULAS = [
    "=HYPERLINK(x)", "+1+1", "-1+1", "@SUM(1)", ";cmd", "\t=1+1", "\r=1+1",
    "＝1+1", "＋1", "－1", "＠SUM(1)", "；cmd", "﹦1+1", "﹢1",  # fullwidth and small forms
    " =1+1", "\u00a0=1+1", "\u3000=1+1",  # spaces
    "\u200b=1+1", "\u2060=1+1", "\ufeff=1+1", "\u202e=1+1", "\u00ad=1+1",  # invisible
    " plain words",  # any leading space
]  # fmt: skip


@pytest.mark.parametrize("value", HIDDEN_FORMULAS)
def test_a_cell_that_could_be_a_formula_is_text(value: str) -> None:
    cell = _cell(value)
    assert cell.startswith("'"), cell
    assert visible(cell) == cell, "no control or invisible characters left raw"


@pytest.mark.parametrize(
    ("value", "cell"),
    [("sms:+15550001", "sms:+15550001"), ("web:p1", "web:p1"), (42, "42"), ("", ""),
     ("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"), ("p\x00nul", "p\\x00nul"),
     ("a\nb", "a\\nb"), ("fever; chills", "fever; chills"), ("é=1", "é=1")],
)  # fmt: skip
def test_a_harmless_cell_is_kept_and_control_characters_are_shown(value: object, cell: str) -> None:
    assert _cell(value) == cell


def test_the_export_neutralises_every_hidden_formula_and_survives_a_nul(direct: App) -> None:
    ids = [*HIDDEN_FORMULAS, "nul\x00inside"]
    for number in range(len(ids)):
        direct.store.record(f"csv-{number}", "web", f"csv-m{number}", "I feel off", triage("unclear"))
    with direct.store.engine.begin() as connection:  # ids as another writer might have stored them
        for number, sender in enumerate(ids):
            connection.execute(
                escalations.update().where(escalations.c.sender_id == f"csv-{number}").values(sender_id=sender)
            )
    client = direct.client()
    assert client.login("nurse") == 302
    status, _, body = client.get("/export.csv?status=all&level=unclear")
    assert status == 200, body
    patients = {row["patient"] for row in csv.DictReader(io.StringIO(body))}
    assert patients == {_cell(sender) for sender in ids}
    assert all(patient.startswith("'") for patient in patients if not patient.startswith("nul"))
    assert "nul\\x00inside" in patients and "\x00" not in body
    assert direct.accounts.audit_entries(username="nurse")[0]["action"] == "export_csv"


# -- log records ---------------------------------------------------------------------------------

FORGED = "p1\n2030-01-01 12:00:00,000 ERROR bot.careteam: escalation 7 resolved by dr.lee"


def test_a_log_record_is_one_line_whatever_its_arguments_hold() -> None:
    assert installed(), "importing bot installs it"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("test.logging_safety")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("rate limit reached (sender %s); safe reply only", FORGED)
        logger.warning(f"f-string with the id inside: {FORGED}\r\x1b[2K\u2028\u202e 100%")
        try:
            raise ValueError(f"bad sender {FORGED}")
        except ValueError:
            logger.exception("handling failed (sender %r)", "x\ny")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    records = [line for line in lines if not line.startswith(" ")]
    assert len(records) == 3, lines
    assert not any(line.startswith("2030-01-01") for line in lines)
    assert "(sender p1\\n2030-01-01 12:00:00,000 ERROR" in records[0]
    assert records[1].endswith("\\r\\x1b[2K\\u2028\\u202e 100%")
    assert "    ValueError: bad sender p1" in lines, "the traceback keeps its lines, indented"
    assert "    2030-01-01 12:00:00,000 ERROR bot.careteam: escalation 7 resolved by dr.lee" in lines


@pytest.mark.parametrize(
    "module",
    ["bot.careteam.app", "bot.actions", "bot.channels.rest"],  # the care-team app, the action server, the Rasa server
)
def test_every_server_process_writes_one_line_records(module: str) -> None:
    code = (
        "import importlib, logging, sys\n"
        f"importlib.import_module({module!r})\n"
        "logging.basicConfig(stream=sys.stdout, format='%(levelname)s %(message)s')\n"
        f"logging.getLogger('any').warning('sender %s', {FORGED!r})\n"
    )
    env = serve.rasa_env(serve.default_ports())
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "WARNING sender " + FORGED.replace("\n", "\\n") in lines
    assert not any(line.startswith("2030-01-01") for line in lines)
