"""Spanish replies on every channel, against the real servers: REST, SMS (GSM-7, three segments),
socket.io and the chat page (browser test with a screenshot)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from playwright.sync_api import Browser

from bot.channels import sms_text
from tests.conftest import SHOTS, Assistant
from tests.test_sms import sms, text_of
from tests.test_socketio import converse

pytestmark = pytest.mark.integration


def test_rest_answers_a_spanish_emergency_in_spanish(assistant: Assistant) -> None:
    text, triage = assistant.say("es-rest", "mi hijo está convulsionando")
    assert triage["level"] == "emergency" and triage["language"] == "es"
    assert text.lower().startswith("llame a emergencias"), text
    assert "convulsiones" in text.lower()


def test_a_spanish_follow_up_is_answered_in_spanish(assistant: Assistant) -> None:
    assistant.say("es-follow", "tiene calentura")
    text, triage = assistant.say("es-follow", "¿qué hago ahora?")
    assert triage["level"] == "call_now"
    assert "de inmediato" in text.lower() and "fiebre" in text.lower(), text


def test_spanish_sms_is_gsm7_in_three_segments(assistant: Assistant) -> None:
    status, twiml = sms(assistant, "+16175550142", "mi niña tiene calentura y devolvió dos veces")
    text = text_of(twiml)
    assert status == 200
    assert "inmediato" in text.lower(), text
    assert sms_text.is_gsm7(text) and sms_text.segments(text) <= 3


def test_socketio_answers_in_spanish(assistant: Assistant) -> None:
    texts, triage = converse(assistant, "le duele mucho la cabeza")
    assert triage["language"] == "es" and triage["level"] == "call_now"
    assert texts[0].lower().startswith("llame a su médico"), texts


def test_the_chat_page_in_spanish(assistant: Assistant, browser: Browser) -> None:
    base = f"http://localhost:{assistant.ports.rasa}/webhooks/web/"
    with urllib.request.urlopen(base + "config.json", timeout=30) as answer:
        assert json.loads(answer.read())["strings"]["es"]["send"] == "Enviar"
    page = browser.new_page(locale="es-MX")
    try:
        page.goto(base)
        page.wait_for_function("document.documentElement.lang === 'es'")
        assert page.locator("#send").inner_text() == "Enviar"
        page.fill("#message", "mi hijo tiene calentura y escalofríos")
        page.click("#send")
        card = page.locator("li.card").last
        card.wait_for(timeout=60_000)
        assert "Llame a su equipo de atención ahora" in card.inner_text()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "webchat-spanish.png"), full_page=True)
        page.click("#language-switch")
        assert page.locator("#send").inner_text() == "Send"
    finally:
        page.close()
