"""The ResponseSelector runs only on messages whose intent is `faq` (bot/channels/rasa_patches.py): with
the trained model, every FAQ question parses exactly as with Rasa's own selector, and every other
message parses the same but for the FAQ choice nobody reads."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa.core.agent import Agent
from rasa.nlu.selectors.response_selector import ResponseSelector

from bot.channels import rasa_patches
from tests.conftest import ROOT

OTHERS = [
    "my son has a fever of 39.2",
    "she had a seizure",
    "hello",
    "thanks, bye",
    "what should I do now?",
    "it's getting worse",
    "no fever today",
    "hola, mi hija tiene fiebre",
    "are you a robot?",
]


def faq_questions() -> list[str]:
    """Every FAQ example of the training data, English and Spanish, and a question put another way."""
    questions = ["how many weeks does one cycle last?"]
    for name in ("nlu.yml", "nlu_es.yml"):
        data = yaml.safe_load((ROOT / "bot" / "data" / name).read_text(encoding="utf-8"))
        for block in data["nlu"]:
            if str(block.get("intent", "")).startswith("faq/"):
                questions += [line[2:].strip() for line in block["examples"].splitlines() if line.startswith("- ")]
    return questions


@pytest.fixture(scope="module")
def agent(trained_model: Path) -> Iterator[Agent]:
    yield Agent.load(str(trained_model))


def parse(agent: Agent, texts: list[str]) -> list[dict[str, Any]]:
    async def all_of_them() -> list[dict[str, Any]]:
        return [await agent.parse_message(text) for text in texts]

    return asyncio.run(all_of_them())


def test_faq_questions_and_other_messages_parse_as_with_rasa_s_own_selector(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ResponseSelector.process is rasa_patches._select_responses
    texts = faq_questions() + OTHERS
    assert len(texts) > 50
    patched = parse(agent, texts)
    monkeypatch.setattr(ResponseSelector, "process", rasa_patches._original_select)
    original = parse(agent, texts)
    asked = 0
    for text, mine, rasa_s in zip(texts, patched, original, strict=True):
        if rasa_s["intent"]["name"] == "faq":
            asked += 1
            assert mine == rasa_s, text
            assert mine["intent"]["full_retrieval_intent_name"].startswith("faq/"), text
        else:
            assert "response_selector" not in mine, text
            assert mine == {key: value for key, value in rasa_s.items() if key != "response_selector"}, text
    assert asked > 50  # most examples; some name a side effect, and the triage core answers those
    assert all(p["intent"]["name"] != "faq" for p in patched[-len(OTHERS) :])
