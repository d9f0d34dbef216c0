"""Conversation ids the server issues (bot/channels/sessions.py): 128 random bits with an HMAC tag,
accepted only on their own channel and under the secret that made them; the secret from the
environment or from an owner-only file made once, shared by replicas that start together."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import pytest

from bot.channels.sessions import SOCKETIO, WEB, Sessions, SessionSecretError, load_secret

SECRET = b"a test secret of more than thirty-two bytes"


@pytest.fixture
def sessions() -> Sessions:
    return Sessions(SECRET)


def test_an_issued_id_names_its_channel_and_carries_128_random_bits(sessions: Sessions) -> None:
    issued = sessions.issue(WEB)
    channel, token = issued.split(":")
    random_part, _ = token.split(".")
    assert channel == "web"
    assert len(base64.urlsafe_b64decode(random_part + "==")) == 16
    assert len({sessions.issue(WEB) for _ in range(1000)}) == 1000


def test_an_issued_id_is_valid_on_its_channel_only(sessions: Sessions) -> None:
    issued = sessions.issue(WEB)
    assert sessions.valid(WEB, issued)
    assert not sessions.valid(SOCKETIO, issued)
    assert not sessions.valid(SOCKETIO, issued.replace("web:", "socketio:"))
    assert not Sessions(SECRET + b"!").valid(WEB, issued)  # another secret, another server


@pytest.mark.parametrize(
    "candidate",
    [None, 5, ["web:x"], "", "web:", "sms:+15550100", "parent-1", "web:" + "A" * 45, "web:" + "A" * 10_000],
)
def test_anything_not_issued_is_not_valid(sessions: Sessions, candidate: object) -> None:
    assert not sessions.valid(WEB, candidate)


def test_every_changed_character_of_an_id_makes_it_invalid(sessions: Sessions) -> None:
    issued = sessions.issue(WEB)
    for index in range(len("web:"), len(issued)):
        if issued[index] == ".":
            continue
        changed = issued[:index] + ("B" if issued[index] != "B" else "C") + issued[index + 1 :]
        assert not sessions.valid(WEB, changed), index


def test_resume_or_issue_keeps_a_valid_id_and_replaces_any_other(sessions: Sessions) -> None:
    issued = sessions.issue(SOCKETIO)
    assert sessions.resume_or_issue(SOCKETIO, issued) == (issued, True)
    fresh, resumed = sessions.resume_or_issue(SOCKETIO, "s" * 10_000)
    assert not resumed and sessions.valid(SOCKETIO, fresh)


def test_the_secret_from_the_environment_must_be_long_enough(tmp_path: Path) -> None:
    assert load_secret({"TRIAGE_SESSION_SECRET": "x" * 32}) == b"x" * 32
    with pytest.raises(SessionSecretError, match="at least 32 characters"):
        load_secret({"TRIAGE_SESSION_SECRET": "short"})


def test_the_secret_file_is_made_once_owner_only_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "var" / "session-secret"
    first = load_secret({"TRIAGE_SESSION_SECRET_FILE": str(path)})
    assert len(first) >= 32 and path.stat().st_mode & 0o777 == 0o600
    assert load_secret({"TRIAGE_SESSION_SECRET_FILE": str(path)}) == first
    assert [p.name for p in path.parent.iterdir()] == ["session-secret"]  # no temporary file left


def test_replicas_starting_together_share_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "session-secret"
    found: list[bytes] = []
    start = threading.Barrier(8)

    def replica() -> None:
        start.wait()
        found.append(load_secret({"TRIAGE_SESSION_SECRET_FILE": str(path)}))

    threads = [threading.Thread(target=replica) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "session-secret"
    path.write_text("y" * 43)
    path.chmod(0o644)
    with pytest.raises(SessionSecretError, match="chmod 600"):
        load_secret({"TRIAGE_SESSION_SECRET_FILE": str(path)})
