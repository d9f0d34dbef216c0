"""The scale-out deployment on loopback, in Rasa's own scaling model: several Rasa replicas that share a
PostgreSQL tracker store and a Redis lock store (bot/lock_store.py), behind nginx, with the action
server, the care-team app and the escalation store on the same database. Everything listens on
127.0.0.1 (the action server through SANIC_HOST), on free ports, with its files in one working folder.

Loopback is not a boundary on a shared host, so the stores ask for secrets made for each run: PostgreSQL
authenticates every connection with a random password (SCRAM-SHA-256, tools/pgserver.py), Redis with
`requirepass` (a random password in an owner-only configuration file, not on a command line), and the
replicas share a random TRIAGE_SESSION_SECRET (the conversation ids one replica issues, another accepts;
bot/channels/sessions.py). The URLs the processes get carry the passwords; the endpoints file names
only the variable (TRIAGE_REDIS_PASSWORD), and what is printed masks them. CORS as for `make run`
(TRIAGE_CORS_ORIGINS, none by default).

    python -m tools.cluster [--replicas 2] [--port 8080]     # make cluster; Ctrl-C stops it

    with cluster(replicas=2, workdir=tmp) as c:              # for tests and the load test
        urlopen(f"{c.url}/webhooks/rest/webhook", ...)

Processes, started in this order and stopped in reverse, always: a throwaway PostgreSQL server
(tools/pgserver.py), Debian's redis-server (no persistence), the action server(s), the schema (every
table created once, before the replicas: their own lazy `CREATE TABLE`s would race on PostgreSQL), the
care-team app and the Rasa replicas (in parallel: each takes 20-40 s and about 900 MB), then Debian's
nginx: `/webhooks/` (REST, SMS, chat page) to the least busy replica, `/socket.io/` sticky by client
address (ip_hash: socket.io keeps its session in one process), `/health` to a replica's REST health.
Each reply carries `X-Upstream` (the replica that made it). With `--actions N` (N > 1) the action
servers sit behind nginx too, on a port of their own.

Working folder (default var/cluster): endpoints.yml (endpoints.yml of the project plus the Redis lock
store), nginx/nginx.conf, logs/ (one file per process, kept after a stop), spool/ (TRIAGE_SPOOL_DIR).
The database lives in a temporary folder and is deleted at the stop.

Settings as for `make run` (tools/serve.py: TRIAGE_EMERGENCY_NUMBER, TWILIO_AUTH_TOKEN, ...), except that
the cluster sets TRIAGE_DB_URL, TRIAGE_REDIS_PASSWORD, TRIAGE_SESSION_SECRET, TRIAGE_ACTION_URL,
TRIAGE_SPOOL_DIR, TRIAGE_SMS_PUBLIC_URL (nginx's
SMS webhook: Twilio signs the URL it posts to) and SANIC_PROXIES_COUNT=1 (the client's address from
nginx's X-Forwarded-For, for the per-address rate limit). TICKET_LOCK_LIFETIME (Rasa's, 60 s) is how
long a conversation's lock may be held.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot import block_tensorflow
from tools import pgserver, serve

ROOT = serve.ROOT
DEFAULT_WORKDIR = ROOT / "var" / "cluster"
DEFAULT_PORT = 8080
DATABASE = "triage"
#: Rasa's RedisLockStore defaults to database 1; named here so the endpoints file says it.
REDIS_LOCK_DB = 1
#: Rasa's Redis lock store with atomic updates (bot/lock_store.py); "redis" is Rasa's own, which lets two
#: replicas answer one conversation at once (kept selectable to show it: --lock-store redis).
LOCK_STORE = "bot.lock_store.AtomicRedisLockStore"
#: Several replicas start at once on few cores: slower than one alone (tools/serve.py allows 180 s).
READY_TIMEOUT_S = 300.0
STOP_GRACE_S = 15.0
#: What one Rasa replica holds once its model is loaded (TensorFlow, spaCy, DIET): about 900 MB here.
REPLICA_MEMORY_MB = 1000
#: Where Debian's packages put the binaries, for a PATH without the sbin folders.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INSTALL_HINT = "`make cluster` (or `make test`) installs Debian's nginx and redis-server packages"
#: Creates every table of the project once, before any replica or action server writes: two processes'
#: `create_all` for one table can both see it missing, and PostgreSQL then refuses the second CREATE TABLE.
SCHEMA_SCRIPT = """
from bot.careteam.accounts import Accounts
from bot.careteam.store import EscalationStore
from bot.channels.sms_store import SmsStore
from bot.database import create_engine
from bot.tracker_store import TriageSQLTrackerStore

TriageSQLTrackerStore()
SmsStore()
EscalationStore()
Accounts(create_engine())
"""


@dataclass(frozen=True)
class Cluster:
    """A running deployment: where to reach it and what it runs with."""

    url: str  # nginx, e.g. http://127.0.0.1:8080
    db_url: str
    redis_url: str
    replica_urls: tuple[str, ...]
    action_urls: tuple[str, ...]
    careteam_url: str
    env: dict[str, str]
    workdir: Path
    _fleet: Fleet = field(repr=False, compare=False)

    @property
    def rest_url(self) -> str:
        return f"{self.url}/webhooks/rest/webhook"

    @property
    def sms_url(self) -> str:
        return f"{self.url}/webhooks/sms/webhook"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def exited(self) -> list[str]:
        """The processes that have stopped on their own (empty while all run)."""
        return self._fleet.exited()


class Fleet:
    """The child processes, each in a session of its own (so that Ctrl-C reaches only this process, which
    then stops them in order), each logging to a file; stopped in reverse order of start."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                list(command), cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.processes.append((name, process))
        return process

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.is_file() else ""

    def wait_ready(self, name: str, url: str, timeout: float = READY_TIMEOUT_S) -> None:
        process = dict(self.processes)[name]
        try:
            serve.wait_until_ready(url, process, timeout)
        except RuntimeError as error:
            log = self.logs / f"{name}.log"
            raise RuntimeError(f"{name}: {error}; its log ({log}) ends:\n{self.log_tail(name)}") from None

    def exited(self) -> list[str]:
        return [name for name, process in self.processes if process.poll() is not None]

    def stop(self) -> None:
        """Stops the processes, the last started first; those started together (the replicas) together."""
        while self.processes:
            tier = _prefix(self.processes[-1][0])
            batch = [p for name, p in self.processes if _prefix(name) == tier]
            self.processes = [(name, p) for name, p in self.processes if _prefix(name) != tier]
            for process in batch:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            for process in batch:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)  # its session: nginx's workers too
                    process.wait()


def _prefix(name: str) -> str:
    return name.rsplit("-", 1)[0]


@dataclass(frozen=True)
class Layout:
    """Where each process listens, all on 127.0.0.1, and where the files go."""

    workdir: Path
    nginx: int
    replicas: tuple[int, ...]
    actions: tuple[int, ...]
    #: The action endpoint the replicas call: the one action server, or nginx in front of several.
    actions_entry: int
    careteam: int
    redis: int

    @classmethod
    def on_free_ports(cls, workdir: Path, replicas: int, actions: int, nginx: int = 0) -> Layout:
        free = pgserver.free_port
        action_ports = tuple(free() for _ in range(actions))
        return cls(
            workdir=workdir,
            nginx=nginx or free(),
            replicas=tuple(free() for _ in range(replicas)),
            actions=action_ports,
            actions_entry=free() if actions > 1 else action_ports[0],
            careteam=free(),
            redis=free(),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx}"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"


@contextlib.contextmanager
def cluster(
    replicas: int = 2,
    workdir: Path | None = None,
    port: int = 0,
    env_overrides: Mapping[str, str] | None = None,
    actions: int = 1,
    lock_store: str = LOCK_STORE,
) -> Iterator[Cluster]:
    """Starts the deployment (training the model first if stale) and stops all of it at the end, also on
    an exception or Ctrl-C. `port` 0 takes a free port for nginx; `env_overrides` are applied last;
    `lock_store` is the lock store type the replicas' endpoints name."""
    if replicas < 1 or actions < 1:
        raise ValueError("at least one Rasa replica and one action server")
    binaries = required_binaries()
    check_memory(replicas)
    layout = Layout.on_free_ports((workdir or DEFAULT_WORKDIR).resolve(), replicas, actions, port)
    layout.logs.mkdir(parents=True, exist_ok=True)

    env = serve.rasa_env(serve.Ports(layout.replicas[0], layout.actions_entry, layout.careteam))
    env["TRIAGE_ACTION_URL"] = f"http://127.0.0.1:{layout.actions_entry}/webhook"
    env["TRIAGE_SPOOL_DIR"] = str(layout.workdir / "spool")
    env["TRIAGE_SMS_PUBLIC_URL"] = f"{layout.url}/webhooks/sms/webhook"
    # Secrets of this run: every replica must hold the same session secret (an id one issues, all accept).
    env["TRIAGE_SESSION_SECRET"] = secrets.token_urlsafe(32)
    env["TRIAGE_REDIS_PASSWORD"] = secrets.token_urlsafe(24)
    # Sanic's setting: the client's address is the last one nginx adds to X-Forwarded-For, so that the
    # per-address rate limit (bot/channels/limits.py) counts patients, not nginx.
    env["SANIC_PROXIES_COUNT"] = "1"
    env.update(env_overrides or {})
    serve.ensure_model(env)

    fleet = Fleet(layout.logs)
    with pgserver.running(DATABASE, make_target="make cluster") as database:
        try:
            if "TRIAGE_DB_URL" not in (env_overrides or {}):
                env["TRIAGE_DB_URL"] = database.url()
            endpoints = write_endpoints(layout.workdir / "endpoints.yml", lock_store, layout.redis)
            _start(fleet, layout, binaries, env, endpoints)
            yield Cluster(
                url=layout.url,
                db_url=env["TRIAGE_DB_URL"],
                redis_url=f"redis://:{env['TRIAGE_REDIS_PASSWORD']}@127.0.0.1:{layout.redis}/{REDIS_LOCK_DB}",
                replica_urls=tuple(f"http://127.0.0.1:{p}" for p in layout.replicas),
                action_urls=tuple(f"http://127.0.0.1:{p}" for p in layout.actions),
                careteam_url=f"http://localhost:{layout.careteam}",
                env=env,
                workdir=layout.workdir,
                _fleet=fleet,
            )
        finally:
            fleet.stop()
            for runtime in ("nginx/tmp", "redis"):
                shutil.rmtree(layout.workdir / runtime, ignore_errors=True)


def _start(fleet: Fleet, layout: Layout, binaries: Binaries, env: dict[str, str], endpoints: Path) -> None:
    python = str(serve.VENV_BIN / "python")
    redis_dir = layout.workdir / "redis"
    redis_dir.mkdir(mode=0o700, exist_ok=True)
    config = write_redis_config(redis_dir, layout.redis, env["TRIAGE_REDIS_PASSWORD"])
    fleet.spawn("redis", [binaries.redis, str(config)], env)
    wait_for_redis(layout.redis, fleet, env["TRIAGE_REDIS_PASSWORD"])

    for number, port in enumerate(layout.actions, 1):
        fleet.spawn(f"actions-{number}", serve.actions_cli(port), env)
    schema = fleet.spawn("schema", [python, "-c", SCHEMA_SCRIPT], env)
    try:
        failed = schema.wait(timeout=READY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        failed = -1
    if failed:
        raise RuntimeError(f"creating the tables failed ({failed}):\n{fleet.log_tail('schema')}")
    fleet.processes = [(name, p) for name, p in fleet.processes if name != "schema"]

    fleet.spawn("careteam", [python, "-m", "bot.careteam", "serve", "--port", str(layout.careteam)], env)
    origins = serve.cors_origins(env)
    cors = ["--cors", *origins] if origins else []
    for number, port in enumerate(layout.replicas, 1):
        # On loopback whatever TRIAGE_RASA_HOST says: nginx is the cluster's front door.
        fleet.spawn(f"rasa-{number}", serve.rasa_cli("run", "--model", str(serve.MODEL), "--endpoints", str(endpoints),
                                                     "--credentials", "credentials.yml", "--interface", "127.0.0.1",
                                                     "--port", str(port), *cors), env)  # fmt: skip
    for number, port in enumerate(layout.actions, 1):
        fleet.wait_ready(f"actions-{number}", f"http://127.0.0.1:{port}/health")
    fleet.wait_ready("careteam", f"http://127.0.0.1:{layout.careteam}/health")
    for number, port in enumerate(layout.replicas, 1):
        fleet.wait_ready(f"rasa-{number}", f"http://127.0.0.1:{port}/webhooks/rest/")

    config = write_nginx_config(layout)
    fleet.spawn("nginx", [binaries.nginx, "-p", str(config.parent), "-c", str(config),
                          "-e", str(layout.logs / "nginx-error.log")], env)  # fmt: skip
    fleet.wait_ready("nginx", f"{layout.url}/health", timeout=30)


@dataclass(frozen=True)
class Binaries:
    nginx: str
    redis: str


def required_binaries() -> Binaries:
    """nginx and redis-server, or an error that says how to install them."""
    path = f"{os.environ.get('PATH', '')}:{SYSTEM_PATH}"
    found = {name: shutil.which(name, path=path) for name in ("nginx", "redis-server")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not found: {INSTALL_HINT} (apt-get install nginx redis-server)")
    if pgserver.server_binaries() is None:
        raise RuntimeError(pgserver.missing_binaries_message("make cluster"))
    return Binaries(nginx=str(found["nginx"]), redis=str(found["redis-server"]))


def check_memory(replicas: int) -> None:
    """Refuses a number of replicas the machine cannot hold, rather than letting the kernel kill one."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return
    lines = [line.split() for line in meminfo.splitlines() if line.startswith("MemAvailable:")]
    available = int(lines[0][1]) // 1024 if lines else None
    if available is not None and replicas * REPLICA_MEMORY_MB > available:
        raise RuntimeError(
            f"{replicas} Rasa replicas need about {replicas * REPLICA_MEMORY_MB} MB; {available} MB are available"
        )


def write_redis_config(folder: Path, port: int, password: str) -> Path:
    """redis-server's configuration, owner-only: loopback, no persistence, and the password (in a file,
    since a command line is visible to every local user)."""
    path = folder / "redis.conf"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(f'bind 127.0.0.1\nport {port}\nsave ""\nappendonly no\ndir {folder}\ndaemonize no\n'
                     f"protected-mode yes\nrequirepass {password}\n")  # fmt: skip
    return path


def wait_for_redis(port: int, fleet: Fleet, password: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "redis" in fleet.exited():
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
                connection.sendall(f"AUTH {password}\r\nPING\r\n".encode())
                answer = b""
                while answer.count(b"\r\n") < 2:
                    chunk = connection.recv(64)
                    if not chunk:
                        break
                    answer += chunk
                if answer == b"+OK\r\n+PONG\r\n":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"redis-server on port {port} did not answer PING; its log ends:\n{fleet.log_tail('redis')}")


def write_endpoints(path: Path, lock_store: str, redis_port: int) -> Path:
    """The project's endpoints.yml (action server, tracker store) plus the Redis lock store, which makes
    the replicas take turns on one conversation wherever its messages land."""
    endpoints: dict[str, Any] = yaml.safe_load((ROOT / "endpoints.yml").read_text(encoding="utf-8"))
    # The password by name: Rasa fills ${...} from the replicas' environment, so no file holds it.
    endpoints["lock_store"] = {"type": lock_store, "url": "127.0.0.1", "port": redis_port, "db": REDIS_LOCK_DB,
                               "password": "${TRIAGE_REDIS_PASSWORD}"}  # fmt: skip
    header = "# Generated by tools/cluster.py from endpoints.yml: the same endpoints plus the Redis lock store.\n"
    path.write_text(header + yaml.safe_dump(endpoints, sort_keys=False), encoding="utf-8")
    return path


def write_nginx_config(layout: Layout) -> Path:
    """nginx in the foreground with every file it writes inside the working folder (Debian's defaults are
    system paths under /var and /run)."""
    folder = layout.workdir / "nginx"
    temp = folder / "tmp"
    temp.mkdir(parents=True, exist_ok=True)
    user = ""
    if os.getuid() == 0:  # the workers would run as nobody: they need the temp folders for large bodies
        nobody = pwd.getpwnam("nobody")
        for path in (temp, *(temp / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"))):
            path.mkdir(exist_ok=True)
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        user = f"user nobody {_group_name(nobody.pw_gid)};\n"
    replicas = "".join(f"    server 127.0.0.1:{p};\n" for p in layout.replicas)
    actions = ""
    if len(layout.actions) > 1:
        servers = "".join(f"    server 127.0.0.1:{p};\n" for p in layout.actions)
        actions = f"""
  upstream actions {{
    least_conn;
{servers}    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{layout.actions_entry};
    location / {{
      proxy_pass http://actions;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 60s;
    }}
  }}
"""
    # A location that sets any proxy header inherits none from the server level: each names them all.
    forwarded = (
        "      proxy_http_version 1.1;\n"
        "      proxy_set_header Host $http_host;\n"
        "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "      proxy_set_header X-Forwarded-Proto $scheme;\n"
    )
    config = f"""# Generated by tools/cluster.py.
{user}daemon off;
worker_processes 1;
pid nginx.pid;
error_log {layout.logs / "nginx-error.log"} warn;
events {{ worker_connections 1024; }}

http {{
  log_format upstream '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                      'upstream=$upstream_addr time=$request_time';
  access_log {layout.logs / "nginx-access.log"} upstream;
  client_body_temp_path tmp/body;
  proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi;
  scgi_temp_path tmp/scgi;
  server_tokens off;

  # REST, SMS and the chat page: any replica (the Redis lock store orders one conversation's turns).
  upstream rasa {{
    least_conn;
{replicas}    keepalive 32;
  }}
  # socket.io keeps its session in the replica that opened it: one client address, one replica.
  upstream rasa_sticky {{
    ip_hash;
{replicas}  }}
  map $http_upgrade $connection_upgrade {{
    default upgrade;
    ''      close;
  }}

  server {{
    listen 127.0.0.1:{layout.nginx};
    add_header X-Upstream $upstream_addr always;

    location /webhooks/ {{
      proxy_pass http://rasa;
{forwarded}      proxy_set_header Connection "";
      # A turn may wait for the conversation's lock; the SMS channel answers within its own budget.
      proxy_read_timeout 120s;
    }}
    location /socket.io/ {{
      proxy_pass http://rasa_sticky;
{forwarded}      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_buffering off;
      proxy_read_timeout 3600s;
    }}
    location / {{
      return 404;  # Rasa's HTTP API is off; only the channels and the health check pass
    }}
    location = /health {{
      proxy_pass http://rasa/webhooks/rest/;
{forwarded}      proxy_set_header Connection "";
    }}
  }}
{actions}}}
"""
    path = folder / "nginx.conf"
    path.write_text(config, encoding="utf-8")
    return path


def _group_name(gid: int) -> str:
    return grp.getgrgid(gid).gr_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2, help="Rasa replicas behind nginx (default 2)")
    parser.add_argument("--actions", type=int, default=1, help="action servers (default 1; more go behind nginx)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"nginx's port (default {DEFAULT_PORT})")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="configuration and logs")
    parser.add_argument("--lock-store", default=LOCK_STORE, help=f"lock store type (default {LOCK_STORE})")
    args = parser.parse_args(argv)

    block_tensorflow()  # this process only trains (in a child) and supervises

    def on_signal(signum: int, frame: object) -> None:
        for each in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(each, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
        print("\nstopping ...", flush=True)
        raise KeyboardInterrupt  # the same orderly stop as Ctrl-C

    # SIGINT too: Python leaves it ignored in a process started in the background by a shell.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        started = cluster(args.replicas, args.workdir, args.port, actions=args.actions, lock_store=args.lock_store)
        with started as running:
            print(describe(running), flush=True)
            while not running.exited():
                time.sleep(0.5)
            print(f"\nstopped on its own: {', '.join(running.exited())} (see {running.logs})", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("stopped", flush=True)
        return 0
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def masked(url: str) -> str:
    """The URL with its password replaced by ***: the secrets of a run are not printed."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


def describe(running: Cluster) -> str:
    base = running.url
    return (
        f"\nThe scale-out deployment is running: {len(running.replica_urls)} Rasa replicas behind nginx, "
        f"PostgreSQL, Redis lock store.\n"
        f"  patient chat   {base}/webhooks/web/\n"
        f"  REST webhook   POST {running.rest_url}\n"
        f"  socket.io      {base}/socket.io  (sticky by client address)\n"
        f"  SMS webhook    POST {running.sms_url}  (TRIAGE_SMS_PUBLIC_URL; needs TWILIO_AUTH_TOKEN)\n"
        f"  health         {base}/health\n"
        f"  replicas       {' '.join(running.replica_urls)}\n"
        f"  actions        {' '.join(u + '/health' for u in running.action_urls)}\n"
        f"  care team      {running.careteam_url}/\n"
        f"  database       {masked(running.db_url)}\n"
        f"  lock store     {masked(running.redis_url)}\n"
        f"  logs           {running.logs}/\n"
        f"Press Ctrl-C to stop.\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
