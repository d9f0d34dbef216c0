"""Memory of the whole product as `make run` starts it: the supervisor (tools/serve.py), the care-team
app, the action server and the Rasa server, each measured idle (just started) and after 300 patient
messages over REST, by resident set (RSS) and proportional set (PSS: a page shared by several processes,
such as the Python library's, counted once in all, divided between them).

Issue 12 asks that the whole product fit a 2 GB VM with room to spare. Target: the processes together
hold at most TARGET_TOTAL_MB (1,500 MB) resident after the messages, which leaves a 2 GB VM 500 MB for
the kernel, the database's page cache and a burst of conversations. The check is on RSS, which counts a
shared page once in every process that maps it and so overstates the total a little; PSS is the fairer
figure but depends on what else runs on the machine (another Rasa server mapping the same TensorFlow
library halves this one's share of it), so it is printed and not checked. Any failed request fails the
check too (a benchmark that counts refused requests measures nothing), and so does a server that is not
running at the end.

The product is started as `make run` starts it (`python -m tools.serve`, with its memory settings), on a
fresh SQLite database in a scratch folder, without the rate limits (one client sends more than any
patient may). The messages are the core benchmark's synthetic patient messages (10-40 words), with a
share of Spanish ones, in conversations of ten, four at a time; each conversation continues under the
id the server answers with (bot/channels/rest.py issues the ids).

    python -m tools.bench_memory                 # make bench (after tools.bench_rest)
    python -m tools.bench_memory --messages 50   # a smoke run

Results are printed and written to build/bench/memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tools import serve
from tools.bench_rest import Target, conversations_of, free_port, load, triage_settings
from tools.bench_triage import messages

ROOT = serve.ROOT
OUT = ROOT / "build" / "bench"
MESSAGES = 300
PER_CONVERSATION = 10
CONCURRENCY = 4
#: The most the processes may hold resident together after the messages, in MB (see the module docstring).
TARGET_TOTAL_MB = 1500.0
#: How long `make run` may take to say it is ready (it trains first when the model is stale).
READY_TIMEOUT_S = 900.0
#: The servers are measured this long after they said they are ready, and after the last reply: work
#: started by a request (a database checkpoint, a notification) is over by then.
SETTLE_S = 3.0
#: One message in SPANISH_SHARE is in Spanish: the Spanish reader's memory is part of the product's.
SPANISH_SHARE = 0.1
SPANISH = (
    "tengo fiebre de 38.5 desde anoche y escalofríos",
    "mi hijo está muy confundido y no me reconoce",
    "me duele mucho la cabeza y tengo náuseas",
    "tiene diarrea desde ayer y está muy cansado",
    "no tengo fiebre pero me salió un sarpullido en los brazos",
    "le tiemblan las manos y habla raro",
)
#: How each process of `make run` is recognised in its command line, and the name it is reported under.
ROLES = (("-m tools.serve", "supervisor"), ("-m bot.careteam", "care-team app"), ("-m rasa_sdk ", "action server"),
         (" run --model ", "Rasa server"))  # fmt: skip


@dataclass(frozen=True)
class Usage:
    """One process's memory at one moment, in MB."""

    role: str
    pid: int
    rss_mb: float
    pss_mb: float
    #: The most resident the process has been (VmHWM).
    peak_mb: float


def role_of(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
    return next((name for marker, name in ROLES if marker in command), command.strip()[:60])


def usage(pid: int) -> Usage | None:
    """The process's memory now, or None when it has exited."""
    try:
        status = _fields(Path(f"/proc/{pid}/status").read_text())
        rollup = _fields(Path(f"/proc/{pid}/smaps_rollup").read_text())
    except OSError:
        return None
    return Usage(role_of(pid), pid, status["VmRSS"] / 1024, rollup["Pss"] / 1024, status["VmHWM"] / 1024)


def _fields(text: str) -> dict[str, int]:
    """`Name:   1234 kB` lines of a /proc file, in kB."""
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            values[name.strip()] = int(parts[0])
    return values


def family(root: int) -> list[int]:
    """The process and all its descendants, parents first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return found


def snapshot(root: int) -> list[Usage]:
    return [u for u in map(usage, family(root)) if u is not None]


def total(usages: list[Usage], field: str) -> float:
    return float(sum(getattr(u, field) for u in usages))


def texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    english = iter(messages(count, seed=seed))
    return [rng.choice(SPANISH) if rng.random() < SPANISH_SHARE else next(english) for _ in range(count)]


def start_product(scratch: Path, ports: serve.Ports) -> tuple[subprocess.Popen[bytes], Path]:
    """`python -m tools.serve` in its own process group, on a scratch database; its output in a file."""
    env = {
        **os.environ,
        **triage_settings(scratch),
        "TRIAGE_RASA_PORT": str(ports.rasa),
        "TRIAGE_ACTIONS_PORT": str(ports.actions),
        "TRIAGE_CARETEAM_PORT": str(ports.careteam),
    }
    log = scratch / "serve.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "tools.serve"], cwd=ROOT, env=env, stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    return process, log


def wait_ready(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while b"Press Ctrl-C to stop." not in log.read_bytes():
        if process.poll() is not None:
            raise SystemExit(f"make run exited with code {process.returncode} before it was ready:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"make run was not ready after {READY_TIMEOUT_S:.0f} s:\n{log.read_text()}")
        time.sleep(0.5)


def stop_product(process: subprocess.Popen[bytes]) -> None:
    """What Ctrl-C in the terminal does; killed when it has not stopped within a minute."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def settings(pid: int) -> dict[str, str]:
    """The memory settings (tools/serve.py's SERVER_MEMORY) a server actually runs with."""
    try:
        pairs = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return {}
    found = dict(pair.partition("=")[::2] for pair in pairs if pair)
    return {key: found.get(key, "(unset)") for key in serve.SERVER_MEMORY}


def verdict(failures: list[str], after: list[Usage], target_mb: float, messages: int) -> list[str]:
    """What fails the check: any failed request, a server of `make run` missing at the end, or a total
    resident set over the target."""
    problems = failures[:10] + ([f"... and {len(failures) - 10} more failed"] if len(failures) > 10 else [])
    missing = [name for _, name in ROLES if name not in {u.role for u in after}]
    if missing:
        problems.append(f"not running after the messages: {', '.join(missing)}")
    rss = total(after, "rss_mb")
    if rss > target_mb:
        problems.append(f"{rss:.0f} MB resident in all after {messages} messages, over the target of {target_mb:.0f}")
    return problems


def table(idle: list[Usage], after: list[Usage]) -> str:
    later = {u.pid: u for u in after}
    rows = [f"{'process':<15}{'pid':>8}{'idle RSS':>10}{'idle PSS':>10}{'RSS after':>11}{'PSS after':>11}"
            f"{'peak RSS':>10}"]  # fmt: skip
    for u in idle:
        a = later.get(u.pid)
        figures = f"{a.rss_mb:>11.0f}{a.pss_mb:>11.0f}{a.peak_mb:>10.0f}" if a else f"{'(exited)':>32}"
        rows.append(f"{u.role:<15}{u.pid:>8}{u.rss_mb:>10.0f}{u.pss_mb:>10.0f}{figures}")
    rows.append(f"{'total':<15}{'':>8}{total(idle, 'rss_mb'):>10.0f}{total(idle, 'pss_mb'):>10.0f}"
                f"{total(after, 'rss_mb'):>11.0f}{total(after, 'pss_mb'):>11.0f}")  # fmt: skip
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=MESSAGES, help=f"messages to send (default {MESSAGES})")
    parser.add_argument("--target-mb", type=float, default=TARGET_TOTAL_MB,
                        help=f"the most RSS in all after the messages (default {TARGET_TOTAL_MB:.0f})")  # fmt: skip
    args = parser.parse_args(argv)
    ports = serve.Ports(rasa=free_port(), actions=free_port(), careteam=free_port())
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        process, log = start_product(Path(folder), ports)
        try:
            started = time.monotonic()
            wait_ready(process, log)
            ready_s = time.monotonic() - started
            time.sleep(SETTLE_S)
            idle = snapshot(process.pid)
            used = {u.role: settings(u.pid) for u in idle if u.role in ("Rasa server", "action server")}
            target = Target("triage", f"http://127.0.0.1:{ports.rasa}/webhooks/rest/webhook", triage=True)
            conversations = conversations_of(texts(args.messages, seed=17), PER_CONVERSATION)
            run = asyncio.run(load(target, conversations, CONCURRENCY, f"memory-{time.time_ns()}"))
            time.sleep(SETTLE_S)
            after = snapshot(process.pid) if process.poll() is None else []
        finally:
            stop_product(process)
    print(f"make run: ready in {ready_s:.0f} s; {run.messages} messages over REST in {run.elapsed_s:.0f} s, "
          f"{CONCURRENCY} conversations at a time ({SPANISH_SHARE:.0%} in Spanish)")  # fmt: skip
    for role, values in used.items():
        print(f"  {role}: {' '.join(f'{k}={v}' for k, v in values.items())}")
    print(f"\nmemory in MB\n{table(idle, after)}\n")
    problems = verdict(run.failures, after, args.target_mb, run.messages)
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"messages": run.messages, "failed": len(run.failures), "target_total_rss_mb": args.target_mb,
              "settings": used, "idle": [asdict(u) for u in idle], "after": [asdict(u) for u in after],
              "total_mb": {"idle_rss": total(idle, "rss_mb"), "idle_pss": total(idle, "pss_mb"),
                           "after_rss": total(after, "rss_mb"), "after_pss": total(after, "pss_mb")}}  # fmt: skip
    (OUT / "memory.json").write_text(json.dumps(result, indent=2) + "\n")
    for problem in problems:
        print(f"FAILED: {problem}")
    if not problems:
        print(f"ok: {total(after, 'rss_mb'):.0f} MB resident in all after {run.messages} messages "
              f"(target {args.target_mb:.0f} MB)")  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
