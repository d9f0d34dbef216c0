"""Care-team accounts: argon2 password hashes, login throttling (of guessing, never of the clinician),
sessions that expire with the user's actions only, the CSRF check and the audit log (SQLite, with one
PostgreSQL smoke test)."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.careteam.accounts import AccountError, Accounts, Policy, audit_log, csrf_ok, login_failures, sessions, users
from bot.careteam.store import utcnow
from bot.database import create_engine
from tests.postgres import Server, fresh_database

PASSWORD = "correct horse battery"
WARD = "10.0.0.7"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.engine.Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'triage.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def accounts(engine: sa.engine.Engine) -> Accounts:
    accounts = Accounts(engine)
    accounts.add_user("Nurse.Joy", PASSWORD, display_name=" Joy Smith ")
    accounts.add_user("admin", PASSWORD + "!", role="admin")
    return accounts


@pytest.fixture(scope="module")
def one_user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Accounts]:
    """Accounts with nurse.joy, for the tests that only read or are refused (argon2 is slow on purpose)."""
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('accounts') / 'triage.db'}")
    accounts = Accounts(engine)
    accounts.add_user("nurse.joy", PASSWORD)
    yield accounts
    engine.dispose()


def set_times(accounts: Accounts, token: str, **times: dt.datetime) -> None:
    """Moves a session's stored clock, as if time had passed."""
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    with accounts.engine.begin() as connection:
        connection.execute(sessions.update().where(sessions.c.token_hash == token_hash).values(**times))


def fail(accounts: Accounts, times: int, username: str = "nurse.joy", address: str = WARD) -> None:
    for _ in range(times):
        assert accounts.authenticate(username, "wrong password!", address) is None


def failed_earlier(accounts: Accounts, pairs: list[tuple[str, str]], ago: dt.timedelta = dt.timedelta()) -> None:
    """Failed logins that happened `ago`, many at once (argon2 makes real ones take 50 ms each)."""
    at = utcnow() - ago
    with accounts.engine.begin() as connection:
        connection.execute(login_failures.insert(), [{"username": u, "address": a, "at": at} for u, a in pairs])


def age_failures(accounts: Accounts, by: dt.timedelta) -> None:
    """As if `by` had passed since the failures (all of which just happened)."""
    with accounts.engine.begin() as connection:
        connection.execute(login_failures.update().values(at=utcnow() - by))


# -- users -----------------------------------------------------------------------------------------


def test_a_user_is_stored_with_an_argon2_hash_not_the_password(accounts: Accounts) -> None:
    with accounts.engine.connect() as connection:
        row = connection.execute(sa.select(users).where(users.c.username == "nurse.joy")).one()._mapping
    assert row["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in row["password_hash"]
    assert [(u.username, u.display_name, u.role, u.is_admin) for u in accounts.users()] == [
        ("admin", "admin", "admin", True),
        ("nurse.joy", "Joy Smith", "clinician", False),
    ]


@pytest.mark.parametrize(
    ("username", "password", "role", "error"),
    [
        ("nurse2", "short pass!", "clinician", "at least 12 characters"),
        ("nurse2", "", "clinician", "at least 12 characters"),
        ("longusername1", "LongUsername1", "clinician", "must not be the username"),
        ("nurse2", PASSWORD, "surgeon", "role must be one of clinician, admin"),
        ("nurse two", PASSWORD, "clinician", "letters, digits"),
        ("", PASSWORD, "clinician", "letters, digits"),
        ("x" * 65, PASSWORD, "clinician", "letters, digits"),
        (" NURSE.JOY ", PASSWORD, "clinician", "exists"),
    ],
)
def test_bad_accounts_are_refused(one_user: Accounts, username: str, password: str, role: str, error: str) -> None:
    with pytest.raises(AccountError, match=error):
        one_user.add_user(username, password, role)


def test_a_short_new_password_is_refused_and_a_good_one_ends_the_sessions(accounts: Accounts) -> None:
    user = accounts.authenticate("nurse.joy", PASSWORD, WARD)
    assert user is not None
    token = accounts.start_session(user)
    with pytest.raises(AccountError, match="at least 12"):
        accounts.set_password("nurse.joy", "too short")
    assert accounts.session(token) is not None
    accounts.set_password("nurse.joy", "a new long passphrase")
    assert accounts.session(token) is None
    assert accounts.authenticate("nurse.joy", PASSWORD, WARD) is None
    assert accounts.authenticate("nurse.joy", "a new long passphrase", WARD) is not None
    with pytest.raises(AccountError, match="no user"):
        accounts.set_password("nobody", "a new long passphrase")


# -- logging in ----------------------------------------------------------------------------------


def test_the_right_password_logs_in_and_a_wrong_one_does_not(accounts: Accounts) -> None:
    user = accounts.authenticate("  Nurse.JOY ", PASSWORD, WARD)
    assert user is not None and (user.username, user.role) == ("nurse.joy", "clinician")
    assert accounts.authenticate("nurse.joy", PASSWORD.upper(), WARD) is None
    assert accounts.authenticate("nurse.joy", "", WARD) is None
    assert accounts.authenticate("nobody", PASSWORD, WARD) is None


def test_five_failures_from_one_address_refuse_that_name_there_even_with_the_right_password(
    accounts: Accounts,
) -> None:
    assert accounts.policy.max_failures == 5
    fail(accounts, 4)
    assert not accounts.throttled("nurse.joy", WARD)
    fail(accounts, 1)
    assert accounts.throttled("nurse.joy", WARD)
    assert accounts.throttled(" NURSE.JOY ", WARD), "however the name is typed"
    assert accounts.authenticate("nurse.joy", PASSWORD, WARD) is None, "the right password is refused too"
    assert not accounts.throttled("admin", WARD), "other users at that address are not affected"
    assert accounts.authenticate("admin", PASSWORD + "!", WARD) is not None

    # The first refusal is short (a clinician who mistyped), then the pair may try again.
    gate = accounts.gate("nurse.joy", WARD)
    assert gate.retry_after is not None
    assert dt.timedelta(seconds=50) < gate.retry_after <= accounts.policy.first_lockout
    age_failures(accounts, accounts.policy.first_lockout)
    assert accounts.authenticate("nurse.joy", PASSWORD, WARD) is not None


def test_guessing_from_elsewhere_never_locks_the_clinician_out(accounts: Accounts) -> None:
    """The issue: five wrong passwords from anywhere locked the real clinician out for 15 minutes."""
    fail(accounts, 5, address="203.0.113.9")
    assert accounts.throttled("nurse.joy", "203.0.113.9")
    assert not accounts.throttled("nurse.joy", WARD)
    assert accounts.authenticate("nurse.joy", PASSWORD, WARD) is not None

    # A guesser with a hundred addresses, five tries each: still no lockout at the ward, but every
    # attempt for that name is slowed.
    failed_earlier(accounts, [("nurse.joy", f"198.51.100.{n % 100}") for n in range(500)])
    gate = accounts.gate("nurse.joy", WARD)
    assert not gate.refused
    assert gate.delay_s == accounts.policy.max_delay_s
    assert accounts.authenticate("nurse.joy", PASSWORD, WARD) is not None


def test_further_failures_double_the_refusal_up_to_the_window(accounts: Accounts) -> None:
    policy = accounts.policy
    fail(accounts, 5)
    fail(accounts, 1)  # refused, and not counted: a refused attempt tells nothing and costs nothing
    first = accounts.gate("nurse.joy", WARD).retry_after
    assert first is not None and first <= policy.first_lockout
    age_failures(accounts, policy.first_lockout)
    fail(accounts, 1)
    gate = accounts.gate("nurse.joy", WARD)
    assert gate.retry_after is not None
    assert policy.first_lockout < gate.retry_after <= 2 * policy.first_lockout
    failed_earlier(accounts, [("nurse.joy", WARD)] * 10)
    gate = accounts.gate("nurse.joy", WARD)
    assert gate.retry_after is not None
    assert policy.window - dt.timedelta(seconds=10) < gate.retry_after <= policy.window
    age_failures(accounts, policy.window)
    assert not accounts.throttled("nurse.joy", WARD), "failures older than the window count for nothing"


def test_a_flood_of_failures_slows_every_login_and_locks_out_no_one(accounts: Accounts) -> None:
    policy = accounts.policy
    assert accounts.gate("nurse.joy", WARD).delay_s == 0
    flood = 5 * policy.slow_after
    failed_earlier(accounts, [(f"guess{n}", f"192.0.2.{n % 250}") for n in range(flood - 1)])
    assert accounts.gate("nurse.joy", WARD).delay_s == 0
    failed_earlier(accounts, [("guess", "192.0.2.251")])
    assert accounts.gate("nurse.joy", WARD).delay_s == policy.first_delay_s
    failed_earlier(accounts, [(f"more{n}", f"192.0.2.{n % 250}") for n in range(flood)])
    assert accounts.gate("nurse.joy", WARD).delay_s == 2 * policy.first_delay_s, "the delay grows"
    failed_earlier(accounts, [(f"flood{n}", f"192.0.2.{n % 250}") for n in range(50 * flood)])
    gate = accounts.gate("nurse.joy", WARD)
    assert (gate.refused, gate.delay_s) == (False, policy.max_delay_s)
    assert accounts.authenticate("nurse.joy", PASSWORD, WARD) is not None


def test_unknown_names_are_gated_exactly_like_known_ones(accounts: Accounts) -> None:
    fail(accounts, 5, username="nurse.joy")
    fail(accounts, 5, username="no.such.nurse")
    known, unknown = accounts.gate("nurse.joy", WARD), accounts.gate("no.such.nurse", WARD)
    assert known.refused and unknown.refused
    assert known.retry_after is not None and unknown.retry_after is not None
    assert abs((known.retry_after - unknown.retry_after).total_seconds()) < 5
    assert known.delay_s == unknown.delay_s


def test_a_login_forgives_only_its_own_addresses_failures(accounts: Accounts) -> None:
    fail(accounts, 4, address="203.0.113.9")
    assert accounts.authenticate("nurse.joy", PASSWORD, WARD) is not None
    fail(accounts, 1, address="203.0.113.9")
    assert accounts.throttled("nurse.joy", "203.0.113.9"), "the clinician's login did not reset the guesser"


def test_failures_from_one_address_throttle_every_username_from_it(accounts: Accounts) -> None:
    limit = accounts.policy.max_failures_per_address
    for number in range(limit):
        fail(accounts, 1, username=f"guess{number}", address="192.0.2.66")
    assert accounts.throttled("nurse.joy", "192.0.2.66")
    assert accounts.authenticate("nurse.joy", PASSWORD, "192.0.2.66") is None, "the right password is refused too"
    assert not accounts.throttled("nurse.joy", WARD)
    assert accounts.authenticate("nurse.joy", PASSWORD, WARD) is not None


def test_a_successful_login_clears_its_failures(accounts: Accounts) -> None:
    fail(accounts, 4)
    assert accounts.authenticate("nurse.joy", PASSWORD, WARD) is not None
    fail(accounts, 4)
    assert not accounts.throttled("nurse.joy", WARD)


def test_a_long_username_counts_against_the_account_it_names(accounts: Accounts) -> None:
    # Names are cut to 64 characters at login; throttling must count them the same way.
    accounts.add_user("n" * 64, PASSWORD)
    for extra in range(5):
        fail(accounts, 1, username="n" * 64 + "x" * (extra + 1))
    assert accounts.throttled("n" * 64, WARD)
    assert accounts.throttled("n" * 64 + "yyy", WARD)


def test_a_disabled_user_cannot_log_in_and_loses_sessions(accounts: Accounts) -> None:
    user = accounts.authenticate("nurse.joy", PASSWORD, WARD)
    assert user is not None
    token = accounts.start_session(user)
    accounts.set_disabled("nurse.joy", True)
    assert accounts.session(token) is None
    assert accounts.authenticate("nurse.joy", PASSWORD, WARD) is None
    assert [u.disabled for u in accounts.users() if u.username == "nurse.joy"] == [True]

    accounts.set_disabled("nurse.joy", False)
    assert accounts.session(token) is None, "enabling again does not bring the old session back"
    assert accounts.authenticate("nurse.joy", PASSWORD, WARD) is not None
    with pytest.raises(AccountError, match="no user"):
        accounts.set_disabled("nobody", True)


# -- sessions ------------------------------------------------------------------------------------


@pytest.fixture
def token(accounts: Accounts) -> str:
    user = accounts.authenticate("nurse.joy", PASSWORD, WARD)
    assert user is not None
    return accounts.start_session(user)


def test_the_cookie_value_is_not_stored(accounts: Accounts, token: str) -> None:
    with accounts.engine.connect() as connection:
        [stored] = connection.execute(sa.select(sessions.c.token_hash)).scalars().all()
    assert stored == hashlib.sha256(token.encode()).hexdigest() != token
    assert len(token) >= 43, "256 random bits"


def test_a_live_session_restarts_its_idle_clock(accounts: Accounts, token: str) -> None:
    idle = accounts.policy.idle
    set_times(accounts, token, last_seen_at=utcnow() - idle + dt.timedelta(minutes=1))
    session = accounts.session(token)
    assert session is not None and session.user.username == "nurse.joy"
    set_times(accounts, token, created_at=utcnow() - dt.timedelta(hours=1))
    assert accounts.session(token) is not None, "the request above restarted the idle clock"


def test_a_request_the_page_makes_on_its_own_does_not_restart_the_idle_clock(accounts: Accounts, token: str) -> None:
    idle = accounts.policy.idle
    almost = utcnow() - idle + dt.timedelta(seconds=2)
    set_times(accounts, token, last_seen_at=almost)
    assert accounts.session(token, touch=False) is not None, "still live"
    time.sleep(2.5)
    assert accounts.session(token, touch=False) is None, "the auto-refresh kept nothing alive"


def test_a_session_ends_after_the_idle_time(accounts: Accounts, token: str) -> None:
    set_times(accounts, token, last_seen_at=utcnow() - accounts.policy.idle - dt.timedelta(seconds=1))
    assert accounts.session(token) is None
    set_times(accounts, token, last_seen_at=utcnow())
    assert accounts.session(token) is None, "an expired session is deleted, not just refused"


def test_a_session_ends_after_the_absolute_time_however_busy(accounts: Accounts, token: str) -> None:
    set_times(accounts, token, created_at=utcnow() - accounts.policy.absolute - dt.timedelta(seconds=1))
    assert accounts.session(token) is None


def test_sessions_expire_with_a_short_policy_in_real_time(engine: sa.engine.Engine) -> None:
    absolute = 0.8
    accounts = Accounts(engine, Policy(idle=dt.timedelta(seconds=0.2), absolute=dt.timedelta(seconds=absolute)))
    user = accounts.add_user("nurse", PASSWORD)
    started = time.monotonic()
    idle, busy = accounts.start_session(user), accounts.start_session(user)
    for _ in range(3):
        time.sleep(0.15)
        assert accounts.session(busy) is not None, "each request restarts the idle clock"
    assert accounts.session(idle) is None
    while accounts.session(busy) is not None:
        assert time.monotonic() - started < 5, "the absolute limit never ended the session"
        time.sleep(0.05)
    assert time.monotonic() - started >= absolute


def test_expired_sessions_are_removed_when_new_ones_start(accounts: Accounts, token: str) -> None:
    set_times(accounts, token, last_seen_at=utcnow() - accounts.policy.idle - dt.timedelta(seconds=1))
    admin = accounts.authenticate("admin", PASSWORD + "!", WARD)
    assert admin is not None
    accounts.start_session(admin)
    with accounts.engine.connect() as connection:
        assert connection.execute(sa.select(sessions.c.username)).scalars().all() == ["admin"]


def test_logging_out_ends_the_session(accounts: Accounts, token: str) -> None:
    accounts.end_session(token)
    assert accounts.session(token) is None
    accounts.end_session(None)
    accounts.end_session(token)


@pytest.mark.parametrize("cookie", [None, "", "not-a-session", "x" * 129, "é" * 20])
def test_unknown_cookies_have_no_session(accounts: Accounts, token: str, cookie: str | None) -> None:
    assert accounts.session(cookie) is None


def test_the_csrf_token_must_come_back_unchanged(accounts: Accounts, token: str) -> None:
    session = accounts.session(token)
    assert session is not None
    assert csrf_ok(session, session.csrf_token)
    for sent in (None, "", session.csrf_token[:-1], session.csrf_token + "x", "é" * 43):
        assert not csrf_ok(session, sent)
    other = accounts.start_session(session.user)
    other_session = accounts.session(other)
    assert other_session is not None and other_session.csrf_token != session.csrf_token
    assert not csrf_ok(session, other_session.csrf_token), "each session has its own token"


# -- audit ---------------------------------------------------------------------------------------


def test_audit_entries_are_recorded_and_filtered(accounts: Accounts) -> None:
    accounts.audit("nurse.joy", "login", address=WARD)
    accounts.audit("nurse.joy", "view_transcript", patient="sms:+15550001", escalation_id=7)
    accounts.audit("admin", "view_transcript", patient="sms:+15550002", escalation_id=8, detail="x" * 3000)
    accounts.audit("nurse.joy", "resolve", patient="sms:+15550001", escalation_id=7, detail="called back")

    everything = accounts.audit_entries()
    assert [e["action"] for e in everything] == ["resolve", "view_transcript", "view_transcript", "login"]
    assert all(e["at"].tzinfo is not None and (utcnow() - e["at"]).total_seconds() < 60 for e in everything)
    assert [e["action"] for e in accounts.audit_entries(username="nurse.joy")] == [
        "resolve",
        "view_transcript",
        "login",
    ]
    assert [
        (e["action"], e["escalation_id"], e["detail"]) for e in accounts.audit_entries(patient="sms:+15550001")
    ] == [
        ("resolve", 7, "called back"),
        ("view_transcript", 7, None),
    ]
    assert [e["username"] for e in accounts.audit_entries(username="admin", patient="sms:+15550001")] == []
    assert len(accounts.audit_entries(username="admin")[0]["detail"]) == 2000
    assert accounts.audit_entries(username="nurse.joy")[-1]["address"] == WARD
    assert len(accounts.audit_entries(limit=2)) == 2


def test_a_repeated_view_folds_into_one_audit_entry(accounts: Accounts) -> None:
    fold = dt.timedelta(minutes=5)
    assert accounts.audit_view("nurse.joy", "view_queue_rows", "status=open", WARD, fold)
    for _ in range(3):
        assert not accounts.audit_view("nurse.joy", "view_queue_rows", "status=open", WARD, fold)
    assert accounts.audit_view("nurse.joy", "view_queue_rows", "status=all", WARD, fold), "another view"
    assert accounts.audit_view("admin", "view_queue_rows", "status=open", WARD, fold), "another user"
    assert accounts.audit_view("nurse.joy", "view_queue_rows", "status=open", "10.0.0.8", fold), "another place"
    accounts.audit("nurse.joy", "view_queue", detail="status=new", address=WARD)
    assert not accounts.audit_view("nurse.joy", "view_queue_rows", "status=new", WARD, fold, same_as=("view_queue",))
    with accounts.engine.begin() as connection:
        connection.execute(audit_log.update().values(at=utcnow() - fold))
    assert accounts.audit_view("nurse.joy", "view_queue_rows", "status=open", WARD, fold), "the fold has passed"
    rows = [(e["action"], e["detail"], e["address"]) for e in accounts.audit_entries(username="nurse.joy")]
    assert rows == [
        ("view_queue_rows", "status=open", WARD),
        ("view_queue", "status=new", WARD),
        ("view_queue_rows", "status=open", "10.0.0.8"),
        ("view_queue_rows", "status=all", WARD),
        ("view_queue_rows", "status=open", WARD),
    ]


# -- PostgreSQL ----------------------------------------------------------------------------------


def test_accounts_on_postgresql(postgres_server: Server) -> None:
    engine = create_engine(fresh_database(postgres_server))
    try:
        accounts = Accounts(engine)
        accounts.add_user("nurse", PASSWORD)
        fail(accounts, 2, username="nurse")
        user = accounts.authenticate("nurse", PASSWORD, WARD)
        assert user is not None
        token = accounts.start_session(user)
        session = accounts.session(token)
        assert session is not None and csrf_ok(session, session.csrf_token)
        set_times(accounts, token, last_seen_at=utcnow() - accounts.policy.idle - dt.timedelta(seconds=1))
        assert accounts.session(token) is None
        fail(accounts, 5, username="nurse")
        assert accounts.throttled("nurse", WARD)
        assert accounts.authenticate("nurse", PASSWORD, WARD) is None
        assert not accounts.throttled("nurse", "10.9.9.9")
        assert accounts.authenticate("nurse", PASSWORD, "10.9.9.9") is not None
        accounts.audit("nurse", "view_transcript", patient="p1", escalation_id=1, address="2001:db8::1" * 8)
        [entry] = accounts.audit_entries(patient="p1")
        assert entry["action"] == "view_transcript" and len(entry["address"]) == 64
    finally:
        engine.dispose()
