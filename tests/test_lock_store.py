"""The conversation lock shared by Rasa replicas (bot/lock_store.py), on a real redis-server: clients that
want one conversation at the same moment get it one at a time, none is refused, and the lock is gone
when the last one is done. Each client has a connection of its own, as each replica has. The server asks
for a password, as the cluster's does (tools/cluster.py), and a client without it is refused."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from rasa.core.lock_store import LockError
from rasa.utils.endpoints import EndpointConfig

from bot.lock_store import AtomicRedisLockStore
from tools.cluster import SYSTEM_PATH, write_redis_config
from tools.pgserver import free_port

PASSWORD = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = shutil.which("redis-server", path=SYSTEM_PATH)
    if binary is None:
        pytest.fail("redis-server is missing: `make test` installs Debian's redis-server package", pytrace=False)
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen([binary, str(write_redis_config(folder, port, PASSWORD))], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "redis-server did not start"
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def store(port: int) -> AtomicRedisLockStore:
    # As Rasa builds it from endpoints.yml (type: bot.lock_store.AtomicRedisLockStore).
    return AtomicRedisLockStore(endpoint_config=EndpointConfig(url="127.0.0.1", port=port, db=1, password=PASSWORD))


def test_simultaneous_clients_take_turns_and_none_is_refused(redis_port: int) -> None:
    clients, turns_each = 8, 6
    inside, most_inside, refused, served = 0, 0, 0, 0
    count = threading.Lock()

    async def take_turns(lock_store: AtomicRedisLockStore) -> None:
        nonlocal inside, most_inside, refused, served
        for _ in range(turns_each):
            try:
                async with lock_store.lock("patient-1", lock_lifetime=30, wait_time_in_seconds=0.005):
                    with count:
                        inside += 1
                        most_inside = max(most_inside, inside)
                    await asyncio.sleep(0.002)
                    with count:
                        inside -= 1
                        served += 1
            except LockError:
                with count:
                    refused += 1

    start = threading.Barrier(clients)

    def client() -> None:
        lock_store = store(redis_port)
        start.wait(timeout=10)
        asyncio.run(take_turns(lock_store))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert (most_inside, refused, served) == (1, 0, clients * turns_each)
    assert store(redis_port).get_lock("patient-1") is None


def test_a_ticket_is_served_in_order_and_an_expired_one_is_skipped(redis_port: int) -> None:
    lock_store = store(redis_port)
    first = lock_store.issue_ticket("patient-2", lock_lifetime=0.05)
    second = lock_store.issue_ticket("patient-2", lock_lifetime=30)
    assert second == first + 1
    assert lock_store.get_lock("patient-2").is_locked(second)
    time.sleep(0.1)
    lock_store.update_lock("patient-2")
    assert not lock_store.get_lock("patient-2").is_locked(second)
    lock_store.cleanup("patient-2", second)
    assert lock_store.get_lock("patient-2") is None


def test_cleanup_keeps_the_lock_while_another_ticket_waits(redis_port: int) -> None:
    lock_store = store(redis_port)
    first = lock_store.issue_ticket("patient-3", lock_lifetime=30)
    second = lock_store.issue_ticket("patient-3", lock_lifetime=30)
    lock_store.cleanup("patient-3", first)
    lock = lock_store.get_lock("patient-3")
    assert lock is not None and not lock.is_locked(second)
    lock_store.cleanup("patient-3", second)
    assert lock_store.get_lock("patient-3") is None


def test_the_rasa_key_format_is_kept(redis_port: int) -> None:
    lock_store = AtomicRedisLockStore(host="127.0.0.1", port=redis_port, db=1, password=PASSWORD, key_prefix="triage")
    lock_store.issue_ticket("patient-4", lock_lifetime=30)
    assert lock_store.red.get("triage:lock:patient-4") is not None
    lock_store.cleanup("patient-4", 0)
    assert lock_store.red.get("triage:lock:patient-4") is None


def test_a_client_without_the_password_is_refused(redis_port: int) -> None:
    for password in (None, "not-the-password"):
        stranger = AtomicRedisLockStore(endpoint_config=EndpointConfig(url="127.0.0.1", port=redis_port, db=1,
                                                                       password=password))  # fmt: skip
        with pytest.raises(LockError):
            stranger.issue_ticket("patient-5", lock_lifetime=30)
    assert store(redis_port).get_lock("patient-5") is None
