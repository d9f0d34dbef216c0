"""The chat page's colours meet WCAG AA contrast (4.5:1) for text on its background."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

CSS = (ROOT / "bot" / "channels" / "webchat" / "chat.css").read_text(encoding="utf-8")
VARIABLES = dict(re.findall(r"--([a-z]+):\s*(#[0-9a-fA-F]{6})", CSS))
AA = 4.5


def luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("name", ["ink", "muted", "focus", "emergency", "call", "mention", "unclear"])
def test_text_colours_on_the_page_and_on_white(name: str) -> None:
    for background in ("#ffffff", "#fafafa"):
        assert contrast(VARIABLES[name], background) >= AA, (name, background)


@pytest.mark.parametrize("name", ["emergency", "call", "focus"])
def test_white_text_on_coloured_buttons_and_banner(name: str) -> None:
    assert contrast("#ffffff", VARIABLES[name]) >= AA
