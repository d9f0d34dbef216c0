"""`make run` (tools/serve.py) as an on-call engineer uses it: it starts the assistant's two servers and
the care-team app, says where they listen, and Ctrl-C stops all of them cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tools import bench_memory, serve

pytestmark = pytest.mark.integration

CLINIC = "https://clinic.example.org"
#: `make run`'s supervisor held 540 MB when it imported what the servers import (issue 6); about 20 now.
SUPERVISOR_MAX_MB = 60


def test_make_run_starts_every_server_and_ctrl_c_stops_them(trained_model: Path, tmp_path: Path) -> None:
    ports = serve.Ports(rasa=free_port(), actions=free_port(), careteam=free_port())
    env = {
        **os.environ,
        "TRIAGE_RASA_PORT": str(ports.rasa),
        "TRIAGE_ACTIONS_PORT": str(ports.actions),
        "TRIAGE_CARETEAM_PORT": str(ports.careteam),
        "TRIAGE_DB": str(tmp_path / "run.db"),
        "TRIAGE_SPOOL_DIR": str(tmp_path / "spool"),
        "TRIAGE_CORS_ORIGINS": CLINIC,
    }
    log = (tmp_path / "serve.log").open("w+b")
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while b"Press Ctrl-C to stop." not in (tmp_path / "serve.log").read_bytes():
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "not ready in 180 s"
            time.sleep(1)
        printed = (tmp_path / "serve.log").read_text()
        assert f"http://localhost:{ports.rasa}/webhooks/web/" in printed
        assert f"http://localhost:{ports.rasa}/webhooks/rest/webhook" in printed
        assert f"http://localhost:{ports.careteam}/" in printed
        assert "no accounts yet: .venv/bin/python -m bot.careteam add-user" in printed
        with urllib.request.urlopen(f"http://localhost:{ports.rasa}/webhooks/web/", timeout=10) as page:
            assert page.status == 200
        with urllib.request.urlopen(f"http://localhost:{ports.careteam}/login", timeout=10) as page:
            assert page.status == 200
        # A patient's words reach the database, never the log (INFO is the default level).
        secret_words = "my zebra-4471 has a fever"
        body = json.dumps({"sender": "log-check", "message": secret_words}).encode()
        url = f"http://localhost:{ports.rasa}/webhooks/rest/webhook"
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200
        assert "zebra-4471" not in (tmp_path / "serve.log").read_text()
        # Every server listens on loopback only (a proxy in front reaches the patient webhooks).
        listening = listeners()
        assert listening[ports.actions] == "127.0.0.1"
        assert listening[ports.careteam] == "127.0.0.1"
        assert listening[ports.rasa] == "127.0.0.1"
        # CORS: the configured origin may call the webhook from its pages; no other origin is echoed.
        assert allowed_origin(url, CLINIC) == CLINIC
        assert allowed_origin(url, "https://evil.example") is None
        # The supervisor imports neither Rasa nor spaCy: it holds a few megabytes, not half a gigabyte.
        assert resident_mb(process.pid) < SUPERVISOR_MAX_MB
        # Memory (issue 12): TensorFlow only in the Rasa server, jax in none, and the servers' settings.
        servers = {bench_memory.role_of(pid): pid for pid in bench_memory.family(process.pid)}
        assert set(servers) >= {"supervisor", "care-team app", "action server", "Rasa server"}, servers
        for role, pid in servers.items():
            libraries = mapped_libraries(pid)
            assert not any("jaxlib" in library for library in libraries), role
            assert any("libtensorflow" in library for library in libraries) == (role == "Rasa server"), role
        for role in ("action server", "Rasa server"):
            assert bench_memory.settings(servers[role]) == serve.SERVER_MEMORY, role
        files = sorted(tmp_path.glob("run.db*"))  # the database and its write-ahead log: patient data
        assert tmp_path / "run.db" in files
        assert all(file.stat().st_mode & 0o077 == 0 for file in files), [oct(f.stat().st_mode) for f in files]
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert process.wait(timeout=60) == 0
        for port in (ports.rasa, ports.actions, ports.careteam):
            with pytest.raises(OSError):
                urllib.request.urlopen(f"http://localhost:{port}/", timeout=2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def allowed_origin(url: str, origin: str) -> str | None:
    """The Access-Control-Allow-Origin the server answers a browser's preflight from `origin` with."""
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type"}  # fmt: skip
    request = urllib.request.Request(url, headers=headers, method="OPTIONS")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            allowed = answer.headers.get("Access-Control-Allow-Origin")
    except urllib.error.HTTPError as error:
        allowed = error.headers.get("Access-Control-Allow-Origin")
    return None if allowed is None else str(allowed)


def resident_mb(pid: int) -> float:
    """The process's resident memory (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def mapped_libraries(pid: int) -> set[str]:
    """The files of shared libraries the process has mapped (from /proc/<pid>/maps)."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split()[-1] for line in lines if ".so" in line.rsplit("/", 1)[-1]}


def test_the_servers_get_the_memory_settings_unless_the_operator_chose_others() -> None:
    env = serve.rasa_env(serve.Ports(rasa=5005, actions=5055), base={"PATH": os.environ["PATH"]})
    assert {key: env[key] for key in serve.SERVER_MEMORY} == serve.SERVER_MEMORY
    chosen = serve.rasa_env(serve.Ports(rasa=5005, actions=5055), base={"MALLOC_ARENA_MAX": "4"})
    assert chosen["MALLOC_ARENA_MAX"] == "4"


def test_rasa_runs_as_its_own_command_line_without_jax() -> None:
    """`rasa --version` through RASA_MAIN; and in a process started the same way, TensorFlow imports
    without jax (its TF Lite module, which would import it, carries on as when jax is not installed)."""
    done = subprocess.run(serve.rasa_cli("--version"), cwd=ROOT, env=serve.rasa_env(serve.default_ports()),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Rasa Version" in done.stdout
    prelude = serve.RASA_MAIN.partition("; from rasa")[0]
    probe = "import tensorflow; print(sorted(m for m, v in sys.modules.items() if v and m.startswith('jax')))"
    done = subprocess.run([sys.executable, "-c", f"{prelude}; {probe}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def listeners() -> dict[int, str]:
    """Listening TCP (IPv4) ports and the address each is bound to, from /proc/net/tcp."""
    bound = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A":  # LISTEN
            address, port = local.split(":")
            bound[int(port, 16)] = ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
    return bound
