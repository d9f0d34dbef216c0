"""The memory benchmark (tools/bench_memory.py) reads what the kernel says of each process of `make run`
and cannot pass on a bad run: a failed request, a server gone, or a total over the target fails it. The
figures themselves are `make bench`'s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tools import bench_memory, serve
from tools.bench_memory import ROLES, Usage, verdict

EMPTY = Usage("", 0, 0.0, 0.0, 0.0)
EVERY_SERVER = [Usage(name, pid, rss_mb=300.0, pss_mb=250.0, peak_mb=320.0) for pid, (_, name) in enumerate(ROLES, 1)]


#: A child that writes to 64 MB and starts a child of its own; both sleep until killed.
HOLDER = """
import subprocess, sys, time
held = bytearray(64 << 20)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
time.sleep(60)
"""


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[bytes]]:
    env = {key: value for key, value in os.environ.items() if key not in serve.SERVER_MEMORY}
    process = subprocess.Popen([sys.executable, "-c", HOLDER], env={**env, "MALLOC_ARENA_MAX": "3"})
    try:
        deadline = time.monotonic() + 30
        while len(bench_memory.family(process.pid)) < 2 or (bench_memory.usage(process.pid) or EMPTY).rss_mb < 64:
            assert time.monotonic() < deadline, "the child did not start its own in 30 s"
            time.sleep(0.1)
        yield process
    finally:
        for pid in reversed(bench_memory.family(process.pid)):
            os.kill(pid, signal.SIGKILL)
        process.wait()


def test_a_process_and_its_children_are_measured(holder: subprocess.Popen[bytes]) -> None:
    family = bench_memory.family(holder.pid)
    assert family[0] == holder.pid and len(family) == 2
    usage = bench_memory.usage(holder.pid)
    assert usage is not None
    assert usage.rss_mb >= 64 and usage.pss_mb >= 64 and usage.peak_mb >= usage.rss_mb


def test_the_settings_a_process_runs_with_are_read_from_it(holder: subprocess.Popen[bytes]) -> None:
    settings = bench_memory.settings(holder.pid)
    assert settings == {
        "MALLOC_ARENA_MAX": "3",
        "MALLOC_TRIM_THRESHOLD_": "(unset)",
        "TF_ENABLE_ONEDNN_OPTS": "(unset)",
    }


def test_a_process_that_has_exited_is_left_out() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert bench_memory.usage(gone.pid) is None
    assert bench_memory.settings(gone.pid) == {}


@pytest.mark.parametrize(
    ("command", "role"),
    [
        ([sys.executable, "-m", "tools.serve"], "supervisor"),
        ([sys.executable, "-m", "bot.careteam", "serve", "--port", "5006"], "care-team app"),
        (serve.actions_cli(5055), "action server"),
        (serve.rasa_cli("run", "--model", "models/triage.tar.gz", "--port", "5005"), "Rasa server"),
    ],
)
def test_each_server_is_known_by_its_command_line(command: list[str], role: str) -> None:
    line = " ".join(command) + " "
    assert next(name for marker, name in ROLES if marker in line) == role


def test_a_run_within_the_target_with_every_reply_passes() -> None:
    assert verdict([], EVERY_SERVER, target_mb=1500, messages=300) == []


def test_any_failed_request_fails_the_check_however_small_the_memory() -> None:
    problems = verdict(["conversation 3, turn 2: HTTP 500"], EVERY_SERVER, target_mb=1500, messages=300)
    assert problems == ["conversation 3, turn 2: HTTP 500"]
    many = verdict([f"failure {n}" for n in range(25)], EVERY_SERVER, target_mb=1500, messages=300)
    assert len(many) == 11 and many[-1] == "... and 15 more failed"


def test_a_server_gone_after_the_messages_fails_the_check() -> None:
    without_rasa = [u for u in EVERY_SERVER if u.role != "Rasa server"]
    assert verdict([], without_rasa, target_mb=1500, messages=300) == ["not running after the messages: Rasa server"]


def test_a_total_over_the_target_fails_the_check() -> None:
    (problem,) = verdict([], EVERY_SERVER, target_mb=1000, messages=300)
    assert problem == "1200 MB resident in all after 300 messages, over the target of 1000"


def test_the_messages_are_the_same_every_run_and_some_are_spanish() -> None:
    texts = bench_memory.texts(300, seed=17)
    assert texts == bench_memory.texts(300, seed=17)
    spanish = sum(text in bench_memory.SPANISH for text in texts)
    assert 10 <= spanish <= 60
