"""Shared fixtures: one real triager for the whole session (building it takes about a second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.triage import Triager, default_triager

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def triager() -> Triager:
    return default_triager()


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """The Rasa model for the current inputs, trained once if stale (about a minute)."""
    from tools import serve

    return serve.ensure_model(serve.rasa_env(serve.default_ports()))
