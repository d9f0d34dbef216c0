"""Shared fixtures: one real triager for the whole session (building it takes about a second)."""

from __future__ import annotations

import pytest

from bot.triage import Triager, default_triager


@pytest.fixture(scope="session")
def triager() -> Triager:
    return default_triager()
