"""Shared fixtures: one real triager for the whole session (building it takes about a second)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from bot.triage import Triager, default_triager
from tools import serve

# As `make test` sets them, for a bare `pytest` too.
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

ROOT = Path(__file__).resolve().parents[1]
SMS_AUTH_TOKEN = "test-auth-token-0123456789abcdef"
#: Browser tests: Debian's Chromium driven by Playwright (its own browser download does not work here).
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = ROOT / "build" / "test-output"


@pytest.fixture(scope="session")
def triager() -> Triager:
    return default_triager()


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """The Rasa model for the current inputs, trained once if stale (about a minute)."""
    return serve.ensure_model(serve.rasa_env(serve.default_ports()))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        launched.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Assistant:
    """The real servers, and a client of them. Tests name their patients ("p-restart"); the server
    issues each conversation's id (bot/channels/sessions.py), and `say`/`post` send a name's issued id
    once the server gave one, so a test's patient keeps one conversation. `sender_id(name)` is that id,
    as the tracker and the escalations store it."""

    def __init__(self, workdir: Path) -> None:
        self.ports = serve.Ports(rasa=free_port(), actions=free_port(), careteam=free_port())
        self.db = workdir / "tracker.db"
        self.logs = workdir / "logs"
        self.env = serve.rasa_env(self.ports, db=self.db)
        self.env["TRIAGE_EMERGENCY_NUMBER"] = "911"
        self.env["TRIAGE_CARE_TEAM_PHONE"] = "+1 555 0100"
        self.env["TWILIO_AUTH_TOKEN"] = SMS_AUTH_TOKEN
        # The secret file as `make run` makes it, in the test's own directory rather than var/.
        self.env["TRIAGE_SESSION_SECRET_FILE"] = str(workdir / "session-secret")
        self.issued: dict[str, str] = {}
        # Every test talks from 127.0.0.1: the per-address limit is tested on its own (test_limits.py).
        self.env["TRIAGE_RATE_PER_ADDRESS"] = "0"
        self.actions: subprocess.Popen[bytes] | None = None
        self.rasa: subprocess.Popen[bytes] | None = None
        self.careteam: subprocess.Popen[bytes] | None = None

    def start_actions(self) -> None:
        self.actions = serve.start_actions(self.ports, self.env, self.logs / "actions.log")

    def start_rasa(self) -> None:
        self.rasa = serve.start_rasa(self.ports, self.env, self.logs / "rasa.log")

    def start_careteam(self) -> None:
        self.careteam = serve.start_careteam(self.ports, self.env, self.logs / "careteam.log")

    def stop_careteam(self) -> None:
        if self.careteam is not None:
            serve.stop(self.careteam)
            self.careteam = None

    def stop_all(self) -> None:
        for process in (self.rasa, self.actions, self.careteam):
            if process is not None:
                serve.stop(process)

    def sender_id(self, name: str) -> str:
        """The id the server issued for the test's patient `name` (who must have spoken)."""
        return self.issued[name]

    def post(self, body: bytes, content_type: str = "application/json", *, as_sent: bool = False) -> tuple[int, Any]:
        """POSTs to the REST webhook. A JSON body's "sender", when it names a test patient, becomes the
        id the server issued for them; the first reply to a name records its id. `as_sent`: the body
        goes unchanged and nothing is recorded."""
        name = None
        if not as_sent:
            try:
                fields = json.loads(body)
            except ValueError:
                fields = None
            if isinstance(fields, dict) and isinstance(fields.get("sender"), str):
                name = fields["sender"]
                if name in self.issued:
                    body = json.dumps({**fields, "sender": self.issued[name]}).encode()
        status, answer = self.post_to("/webhooks/rest/webhook", body, content_type)
        if name is not None and isinstance(answer, list) and answer and "recipient_id" in answer[0]:
            self.issued.setdefault(name, answer[0]["recipient_id"])
        return status, answer

    def post_to(self, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
        url = f"http://localhost:{self.ports.rasa}{path}"
        request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def post_form(self, path: str, fields: dict[str, str], signature: str | None) -> tuple[int, str]:
        url = f"http://localhost:{self.ports.rasa}{path}"
        body = urllib.parse.urlencode(fields).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def say(self, sender: str, text: str) -> tuple[str, dict[str, Any]]:
        status, messages = self.post(json.dumps({"sender": sender, "message": text}).encode())
        assert status == 200, messages
        texts = "\n".join(m["text"] for m in messages if "text" in m)
        triage = next(m["custom"]["triage"] for m in messages if "triage" in (m.get("custom") or {}))
        assert messages[-1].get("custom", {}).get("triage") == triage, "the triage object comes after the text"
        return texts, triage


@pytest.fixture(scope="session")
def assistant(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    running = Assistant(tmp_path_factory.mktemp("assistant"))
    try:
        running.start_actions()
        running.start_rasa()
        yield running
    finally:
        running.stop_all()


# -- PostgreSQL ------------------------------------------------------------------------------------
# The session's throwaway PostgreSQL server (tests/postgres.py), for the tests that run on both databases.
from tests.postgres import postgres_server, postgres_url  # noqa: E402, F401
