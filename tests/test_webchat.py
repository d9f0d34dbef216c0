"""The patient chat page in a real browser (Debian's Chromium driven by Playwright) against the real
servers: a fever report shows the call-now card, a seizure the emergency banner; the conversation
survives a reload; it works with the keyboard alone and on a phone-sized screen. Screenshots of each
state are saved under build/test-output/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import SHOTS, Assistant

pytestmark = pytest.mark.integration


@pytest.fixture
def page(browser: Browser, assistant: Assistant) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    opened = context.new_page()
    opened.goto(f"http://localhost:{assistant.ports.rasa}/webhooks/web/")
    yield opened
    context.close()


def say(page: Page, text: str) -> None:
    page.get_by_label("Describe how you feel").fill(text)
    page.keyboard.press("Enter")


def test_fever_shows_the_call_now_card_and_a_seizure_the_emergency_banner(page: Page) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    banner = page.locator("#emergency-banner")
    expect(banner).to_be_hidden()
    say(page, "my son has a temp of 38.9")
    card = page.locator("li.card.level-call_now").last
    expect(card).to_be_visible()
    expect(card.get_by_role("heading")).to_have_text("Call your care team now")
    expect(card).to_contain_text("This is a fever")
    expect(card.get_by_role("link", name="Call your care team")).to_have_attribute("href", "tel:+15550100")
    page.screenshot(path=str(SHOTS / "webchat-call-now.png"), full_page=True)

    say(page, "he had a seizure")
    emergency = page.locator("li.card.level-emergency").last
    expect(emergency).to_be_visible()
    expect(banner).to_be_visible()
    expect(banner.get_by_role("link", name="911")).to_have_attribute("href", "tel:911")
    expect(emergency.get_by_role("link", name="Call 911")).to_be_visible()
    page.screenshot(path=str(SHOTS / "webchat-emergency.png"), full_page=True)

    page.reload()
    expect(page.locator("li.card.level-call_now")).to_have_count(1)
    expect(page.locator("#emergency-banner")).to_be_visible()
    page.screenshot(path=str(SHOTS / "webchat-after-reload.png"), full_page=True)


def test_the_page_is_usable_with_the_keyboard_and_a_screen_reader(page: Page) -> None:
    log = page.get_by_role("log", name="Conversation")
    expect(log).to_have_attribute("aria-live", "polite")
    page.keyboard.press("Tab")  # the first control is a tap-to-call link; keep tabbing to the message box
    for _ in range(8):
        if page.evaluate("document.activeElement && document.activeElement.id") == "message":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "message"
    page.keyboard.type("a bit of diarrhea today")
    page.keyboard.press("Enter")
    expect(page.locator("li.card.level-mention").last).to_contain_text("not urgent")
    expect(page.get_by_role("group", name="Quick replies").get_by_role("button")).to_have_count(3)
    page.screenshot(path=str(SHOTS / "webchat-keyboard-mention.png"), full_page=True)


def test_a_quick_reply_is_sent_like_typed_text(page: Page) -> None:
    page.get_by_role("button", name="How long is a treatment cycle?").click()
    expect(page.locator("li.bot").last).to_contain_text("every day for 4 weeks")


def test_the_page_keeps_the_conversation_id_the_server_issued(page: Page) -> None:
    # A page from before the server issued ids kept one it made up: the server replaces it.
    page.evaluate("""localStorage.setItem("triage-chat-v1",
        JSON.stringify({sender: "web-made-up-by-the-browser", items: [], emergency: false}))""")
    page.reload()
    say(page, "my son has a fever")
    expect(page.locator("li.card.level-call_now").last).to_be_visible()
    sender = page.evaluate('JSON.parse(localStorage.getItem("triage-chat-v1")).sender')
    assert sender.startswith("web:") and sender != "web-made-up-by-the-browser"
    page.reload()
    say(page, "and a dry mouth")
    expect(page.locator("li.card.level-mention").last).to_contain_text("Earlier you told me about: fever.")
    assert page.evaluate('JSON.parse(localStorage.getItem("triage-chat-v1")).sender') == sender
