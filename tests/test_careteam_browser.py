"""End to end in a real browser (Debian's Chromium driven by Playwright): patients talk to the assistant
through the REST webhook, which records escalations; a clinician logs in to the care-team app, finds
the emergency at the top of the queue, opens the transcript with the matched words marked, acknowledges
and resolves it; the care team's webhook receives one signed notification for it. Screenshots of each
step are saved under build/test-output/."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from bot.careteam.notifier import verify
from bot.careteam.store import EscalationStore
from tests.conftest import ROOT, SHOTS, Assistant, free_port

pytestmark = pytest.mark.integration
PASSWORD = "ward seven night shift"
SECRET = "test-notification-secret-0123456789abcdef"


class Receiver:
    """The care team's webhook: keeps every notification whose signature is right."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                timestamp = self.headers.get("X-Triage-Timestamp", "")
                if not verify(SECRET, timestamp, body, self.headers.get("X-Triage-Signature", "")):
                    self.send_response(401)
                else:
                    received.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()


@pytest.fixture(scope="module")
def careteam(assistant: Assistant, receiver: Receiver) -> Assistant:
    if assistant.careteam is not None:
        assistant.stop_careteam()
    assistant.env.update(TRIAGE_NOTIFY_URL=receiver.url, TRIAGE_NOTIFY_SECRET=SECRET)
    assistant.start_careteam()
    add = subprocess.run(
        [sys.executable, "-m", "bot.careteam", "add-user", "dr.lee", "--name", "Dr Lee", "--password-stdin"],
        input=PASSWORD + "\n", text=True, capture_output=True, env=assistant.env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert add.returncode == 0 or "exists" in add.stderr, add.stderr
    return assistant


@pytest.fixture
def page(browser: Browser, careteam: Assistant) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


def test_a_clinician_takes_an_emergency_from_the_queue_to_resolved(
    page: Page, careteam: Assistant, receiver: Receiver
) -> None:
    store = EscalationStore(f"sqlite:///{careteam.db}")
    for earlier in store.queue():  # other tests' escalations: the ward starts with an empty queue
        store.resolve(earlier.id, "test-setup", "cleared before the browser test")
    waiting = f"web-{uuid.uuid4().hex[:8]}"
    urgent = f"web-{uuid.uuid4().hex[:8]}"
    careteam.say(waiting, "my son has a fever")  # waiting longer, but only call-now
    _, triage = careteam.say(urgent, "my daughter had a seizure and is very sleepy")
    assert triage["level"] == "emergency"
    waiting, urgent = careteam.sender_id(waiting), careteam.sender_id(urgent)  # as the server named them

    base = f"http://localhost:{careteam.ports.careteam}"
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/login")
    page.get_by_label("Username").fill("dr.lee")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Escalations")).to_be_visible()

    first = page.locator("#queue-rows tr").first
    expect(first).to_contain_text(urgent)
    expect(first).to_contain_text("Emergency")
    expect(first).to_contain_text("seizures")
    expect(page.locator("#queue-rows")).to_contain_text(waiting)
    page.screenshot(path=str(SHOTS / "careteam-queue.png"), full_page=True)

    first.get_by_role("link", name=urgent).click()
    marked = page.locator(".transcript .turn.patient mark").first
    expect(marked).to_have_text("seizure")
    expect(marked).to_have_attribute("title", "seizures: emergency")
    expect(page.locator(".transcript")).to_contain_text("my daughter had a seizure and is very sleepy")
    expect(page.locator(".transcript .why").first).to_contain_text("seizures")
    page.screenshot(path=str(SHOTS / "careteam-transcript.png"), full_page=True)

    page.get_by_label("Note (optional)").fill("Spoke to mother; ambulance on its way.")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#status")).to_have_text("acknowledged")
    page.get_by_label("How it was resolved (required)").fill("Admitted via the emergency department.")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#status")).to_have_text("resolved")
    expect(page.locator(".history")).to_contain_text("dr.lee · resolved: Admitted via the emergency department.")
    page.screenshot(path=str(SHOTS / "careteam-resolved.png"), full_page=True)

    page.get_by_role("link", name="Queue").first.click()
    expect(page.locator("#queue-rows")).not_to_contain_text(urgent)
    expect(page.locator("#queue-rows")).to_contain_text(waiting)

    deadline = time.monotonic() + 30
    while not any(n["patient"] == urgent for n in receiver.received) and time.monotonic() < deadline:
        time.sleep(0.5)
    about = [n for n in receiver.received if n["patient"] == urgent]
    assert [(n["event"], n["level"]) for n in about] == [("opened", "emergency")]
    assert about[0]["url"].endswith(f"/escalations/{about[0]['escalation_id']}")
    assert about[0]["symptoms"][0] == {"term": "seizures", "level": "emergency"}
    assert all(set(symptom) == {"term", "level"} for symptom in about[0]["symptoms"])  # not the patient's words
