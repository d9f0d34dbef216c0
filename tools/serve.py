"""Starts the product: trains the model when its inputs changed, then runs the action server, the Rasa
server (web, REST, socket.io and SMS channels, SQL tracker store on SQLite) and the care-team review
app (with its notification worker) on localhost, prints where to reach them, and stops all cleanly on
Ctrl-C.

    python -m tools.serve            # make run
    python -m tools.serve --shell    # make shell: chat in the terminal
    python -m tools.serve --train    # train if stale, then exit

Settings (environment, with defaults): TRIAGE_RASA_PORT 5005, TRIAGE_ACTIONS_PORT 5055,
TRIAGE_CARETEAM_PORT 5006, TRIAGE_DB (var/triage.db), TRIAGE_DB_DIALECT (sqlite), TRIAGE_SPOOL_DIR
(var/spool), TRIAGE_EMERGENCY_NUMBER (911), TRIAGE_CARE_TEAM_PHONE, TRIAGE_NOTIFY_URL and
TRIAGE_NOTIFY_SECRET (care-team notifications; off when empty). The servers' memory settings
(SERVER_MEMORY, below): MALLOC_ARENA_MAX (2), MALLOC_TRIM_THRESHOLD_ (131072), TF_ENABLE_ONEDNN_OPTS (0).

Where the servers listen: every server on 127.0.0.1 (loopback) only. TRIAGE_RASA_HOST (127.0.0.1) is the
address of the Rasa server, the one with the patient webhooks: set it (e.g. 0.0.0.0) only for a proxy on
another host. The action server stays on loopback (SANIC_HOST): it records escalations from any tracker
it is sent. CORS: TRIAGE_CORS_ORIGINS (none) lists the origins, separated by spaces or commas, whose
pages may call the Rasa server from a browser (Rasa's --cors); the chat page is served by the Rasa
server itself and needs none. `*` is refused: it would let any site's page talk to the webhooks.

This process only supervises: it imports neither Rasa nor spaCy (nor TensorFlow through them). The
language assets and the care-team account check run in child processes, so that the supervisor holds
a few megabytes rather than the servers' half gigabyte.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
MODEL_DIR = ROOT / "models"
MODEL_NAME = "triage"
MODEL = MODEL_DIR / f"{MODEL_NAME}.tar.gz"
FINGERPRINT = MODEL_DIR / f"{MODEL_NAME}.inputs.sha256"
#: Everything that changes what `rasa train` produces.
TRAINING_INPUTS = ("config.yml", "domain.yml", "bot/data", "knowledge", "bot/triage", "bot/nlu")
READY_TIMEOUT_S = 180.0
PRIVATE = 0o077
MAX_REQUEST_BYTES = 1024 * 1024
LOOPBACK = "127.0.0.1"
#: How every `rasa` command is run: Rasa's own command line, with jax kept out of the process first.
#: TensorFlow 2.12 requires jax and imports it whenever it can (for an optional XLA export of its TF Lite
#: converter); Rasa never uses it, and it is 66 MB of the Rasa server's memory. A blocked import is the
#: case TensorFlow already handles (jax not installed).
RASA_MAIN = "import sys; sys.modules['jax'] = None; sys.argv[0] = 'rasa'; from rasa.__main__ import main; main()"
#: Memory settings of the servers (each a default the environment may override), measured with
#: tools/bench_memory.py (issue 12: the whole product in a 2 GB VM):
#: - glibc's malloc: free memory at the top of the heap above 128 KiB is handed back to the system (a fixed
#:   threshold, which also keeps glibc from raising its mmap threshold as large blocks are freed), and at
#:   most two arenas rather than one per thread. After 300 messages the Rasa server holds 60 MB less and
#:   the action server 40 MB less; the threshold alone gives most of it, two arenas alone nothing.
#:   jemalloc (Debian's libjemalloc2, preloaded) gave less, and would be one more package to install.
#: - TensorFlow without its oneDNN custom operations (on by default since 2.9, for the speed of large
#:   models; ours are small): the Rasa server loads the DIETClassifier and the ResponseSelector in 80 MB
#:   less. Every message of the evaluation sets and the training data gets the same intent and answer,
#:   confidences equal to 1e-6, as fast; a model trained this way predicts the same too.
SERVER_MEMORY = {"MALLOC_ARENA_MAX": "2", "MALLOC_TRIM_THRESHOLD_": "131072", "TF_ENABLE_ONEDNN_OPTS": "0"}


@dataclass(frozen=True)
class Ports:
    rasa: int
    actions: int
    careteam: int = 5006


def rasa_env(ports: Ports, db: Path | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Rasa's YAML files expect (see config.yml and endpoints.yml), with defaults."""
    env = dict(os.environ if base is None else base)
    for key, value in read_dotenv(ROOT / ".env").items():
        env.setdefault(key, value)
    env.setdefault("RASA_TELEMETRY_ENABLED", "false")
    env.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for key, value in SERVER_MEMORY.items():
        env.setdefault(key, value)
    # Sanic reads SANIC_* settings: a request body over 1 MiB is refused with 413 before it is read.
    env.setdefault("SANIC_REQUEST_MAX_SIZE", str(MAX_REQUEST_BYTES))
    # rasa_sdk's action server binds SANIC_HOST (default all interfaces): it takes whatever tracker it is
    # sent and records escalations from it, so only the Rasa server on this host may reach it.
    env.setdefault("SANIC_HOST", "127.0.0.1")
    env["PYTHONPATH"] = str(ROOT)
    env["TRIAGE_SPACY_MODEL"] = str(ROOT / "build" / "assets" / "spacy_en_lookup")
    env["TRIAGE_ACTION_URL"] = f"http://{LOOPBACK}:{ports.actions}/webhook"
    env.setdefault("TRIAGE_DB_DIALECT", "sqlite")
    if db is not None:
        env["TRIAGE_DB"] = str(db)
        env["TRIAGE_SPOOL_DIR"] = str(db.parent / "spool")
    env.setdefault("TRIAGE_DB", str(ROOT / "var" / "triage.db"))
    env.setdefault("TRIAGE_SPOOL_DIR", str(ROOT / "var" / "spool"))
    if not env.get("TRIAGE_CARETEAM_PUBLIC_URL"):
        env["TRIAGE_CARETEAM_PUBLIC_URL"] = f"http://localhost:{ports.careteam}"
    for optional in ("TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "TWILIO_FROM_NUMBER", "TRIAGE_SMS_PUBLIC_URL"):
        env.setdefault(optional, "")  # credentials.yml names them; empty leaves the SMS channel off
    if env["TRIAGE_DB_DIALECT"] == "sqlite":
        Path(env["TRIAGE_DB"]).parent.mkdir(parents=True, exist_ok=True)
    return env


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a git-ignored `.env` (see .env.example); comments and blank lines skipped."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def default_ports() -> Ports:
    return Ports(
        int(os.environ.get("TRIAGE_RASA_PORT", "5005")),
        int(os.environ.get("TRIAGE_ACTIONS_PORT", "5055")),
        int(os.environ.get("TRIAGE_CARETEAM_PORT", "5006")),
    )


def rasa_cli(*arguments: str) -> list[str]:
    """The command line of `rasa <arguments>` (see RASA_MAIN)."""
    return [str(VENV_BIN / "python"), "-c", RASA_MAIN, *arguments]


def inputs_digest() -> str:
    digest = hashlib.sha256()
    for name in TRAINING_INPUTS:
        path = ROOT / name
        files = (
            [path]
            if path.is_file()
            else sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        )
        for file in files:
            digest.update(str(file.relative_to(ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def ensure_model(env: dict[str, str]) -> Path:
    """Trains the model unless one exists for exactly the current inputs."""
    # The spaCy pipeline the NLU config points at, built if missing, in a child: importing spaCy here
    # would load TensorFlow into this process for good.
    subprocess.run([str(VENV_BIN / "python"), "-m", "bot.triage.assets"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    digest = inputs_digest()
    if MODEL.is_file() and FINGERPRINT.is_file() and FINGERPRINT.read_text().strip() == digest:
        print(f"model is up to date: {MODEL.relative_to(ROOT)}", flush=True)
        return MODEL
    print("training the model (inputs changed) ...", flush=True)
    started = time.monotonic()
    command = rasa_cli("train", "--data", "bot/data", "--out", str(MODEL_DIR), "--fixed-model-name", MODEL_NAME)
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    FINGERPRINT.write_text(digest + "\n")
    print(f"trained in {time.monotonic() - started:.0f} s: {MODEL.relative_to(ROOT)}", flush=True)
    return MODEL


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # nosec B310: callers pass http://localhost URLs
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url}: not ready after {timeout:.0f} s")


def actions_cli(port: int) -> list[str]:
    """The action server's command line: rasa_sdk's own entry point, which `rasa run actions` calls after
    importing Rasa (about 45 MB the action server does not use)."""
    return [str(VENV_BIN / "python"), "-m", "rasa_sdk", "--actions", "bot.actions", "--port", str(port)]


def start_actions(ports: Ports, env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    command = actions_cli(ports.actions)
    process = _spawn(command, env, log)
    wait_until_ready(f"http://{LOOPBACK}:{ports.actions}/health", process)
    return process


def cors_origins(env: dict[str, str]) -> list[str]:
    """TRIAGE_CORS_ORIGINS as a list; `*` is refused (any site's page could then post as a patient)."""
    origins = env.get("TRIAGE_CORS_ORIGINS", "").replace(",", " ").split()
    if "*" in origins:
        raise SystemExit("TRIAGE_CORS_ORIGINS: '*' is not allowed; list the origins, e.g. https://clinic.example.org")
    return origins


def rasa_command(port: int, env: dict[str, str], endpoints: Path | str = "endpoints.yml") -> list[str]:
    """`rasa run` bound to TRIAGE_RASA_HOST (loopback by default), CORS only for TRIAGE_CORS_ORIGINS."""
    command = rasa_cli("run", "--model", str(MODEL), "--endpoints", str(endpoints), "--credentials", "credentials.yml",
                       "--interface", env.get("TRIAGE_RASA_HOST") or LOOPBACK, "--port", str(port))  # fmt: skip
    origins = cors_origins(env)
    return [*command, "--cors", *origins] if origins else command


def start_rasa(
    ports: Ports, env: dict[str, str], log: Path | None = None, endpoints: Path | str = "endpoints.yml"
) -> subprocess.Popen[bytes]:
    process = _spawn(rasa_command(ports.rasa, env, endpoints), env, log)
    host = env.get("TRIAGE_RASA_HOST") or LOOPBACK
    probe = LOOPBACK if host in ("0.0.0.0", "::", "") else host  # nosec B104: only compared, never bound
    wait_until_ready(f"http://{probe}:{ports.rasa}/webhooks/rest/", process)
    return process


def start_careteam(ports: Ports, env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    command = [str(VENV_BIN / "python"), "-m", "bot.careteam", "serve", "--port", str(ports.careteam)]
    process = _spawn(command, env, log)
    wait_until_ready(f"http://{LOOPBACK}:{ports.careteam}/health", process)
    return process


def stop(process: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running(
    ports: Ports, env: dict[str, str], logs: Path | None = None
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """The servers, started in order and always stopped."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        processes["careteam"] = start_careteam(ports, env, logs / "careteam.log" if logs else None)
        processes["actions"] = start_actions(ports, env, logs / "actions.log" if logs else None)
        processes["rasa"] = start_rasa(ports, env, logs / "rasa.log" if logs else None)
        yield processes
    finally:
        for process in reversed(list(processes.values())):
            stop(process)


#: Run in a child: the account store's imports reach Rasa's (bot.database -> bot.tracker_store).
_HAS_ACCOUNTS = """
import sys
from bot.careteam.accounts import Accounts
from bot.database import create_engine, database_url
sys.exit(0 if Accounts(create_engine(database_url())).users() else 3)
"""


def careteam_hint(env: dict[str, str]) -> str:
    """How to make the first account, when there is none yet."""
    done = subprocess.run([str(VENV_BIN / "python"), "-c", _HAS_ACCOUNTS], cwd=ROOT, env=env, check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, umask=PRIVATE)  # fmt: skip
    if done.returncode != 3:
        return ""
    return "(no accounts yet: .venv/bin/python -m bot.careteam add-user NAME --role admin)"


def _spawn(command: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
    """Starts a server with umask 077: the databases, spool and logs it creates (patient data) are
    readable by the owner only."""
    if log is None:
        return subprocess.Popen(command, cwd=ROOT, env=env, umask=PRIVATE)
    log.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "ab") as handle:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, umask=PRIVATE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shell", action="store_true", help="chat in the terminal")
    parser.add_argument("--train", action="store_true", help="train if stale, then exit")
    args = parser.parse_args(argv)
    ports = default_ports()
    env = rasa_env(ports)
    ensure_model(env)
    if args.train:
        return 0
    if args.shell:
        actions = start_actions(ports, env, ROOT / "var" / "log" / "actions.log")
        try:
            command = rasa_cli("shell", "--model", str(MODEL), "--endpoints", "endpoints.yml")
            return subprocess.run(command, cwd=ROOT, env=env).returncode
        finally:
            stop(actions)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    with running(ports, env) as processes:
        base = f"http://localhost:{ports.rasa}"
        print(
            f"\nThe assistant is running.\n"
            f"  patient chat   {base}/webhooks/web/\n"
            f'  REST webhook   POST {base}/webhooks/rest/webhook  {{"sender": "me", "message": "I have a fever"}}\n'
            f"  socket.io      {base}/socket.io\n"
            f"  SMS webhook    POST {base}/webhooks/sms/webhook  (Twilio; needs TWILIO_AUTH_TOKEN)\n"
            f"  care team      http://localhost:{ports.careteam}/  {careteam_hint(env)}\n"
            f"  actions        http://localhost:{ports.actions}/webhook\n"
            f"  conversations  {env['TRIAGE_DB_DIALECT']}: {env['TRIAGE_DB']}\n"
            f"  listening on   {env.get('TRIAGE_RASA_HOST') or LOOPBACK} (TRIAGE_RASA_HOST); CORS origins: "
            f"{' '.join(cors_origins(env)) or 'none'} (TRIAGE_CORS_ORIGINS)\n"
            f"Press Ctrl-C to stop.\n",
            flush=True,
        )
        try:
            while not stopping and all(p.poll() is None for p in processes.values()):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        print("\nstopping ...", flush=True)
    failed = [name for name, p in processes.items() if p.returncode not in (0, -signal.SIGTERM, None)]
    return 1 if failed and not stopping else 0


if __name__ == "__main__":
    raise SystemExit(main())
