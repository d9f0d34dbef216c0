"""The care-team review app: the escalation queue, each patient's transcript with the matched words
marked, acknowledge / resolve with notes, filters and search, CSV export, and for admins the audit log,
the accounts and the notification outbox.

Sanic (already serving the assistant) with Jinja2 templates (autoescaped). Every page needs a login
except /login and /health; every form that changes something carries the session's CSRF token and is
refused without it (or from another origin). Responses forbid framing, caching and inline script.
Every page view and action is written to the audit log with the user, the patient, the address and
the time; so is every refused request of a logged-in user, and an export only once it was made.

The queue's auto-refresh marks its requests (`X-Triage-Auto-Refresh`), and they do not restart the
session's idle clock: an unattended screen is logged out, and the page then says so. Error banners
show fixed messages chosen by a code, never text from the address bar. CSV cells are neutralised for
spreadsheets (`_cell`). Client addresses come from Sanic: the peer, or with `SANIC_PROXIES_COUNT` set
(only when every request comes through that many proxies) the forwarded client address.

Started by `python -m bot.careteam serve` (and by `make run`); see bot/careteam/__main__.py for settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import logging
import math
import secrets
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from sanic import Request, Sanic, response
from sanic.exceptions import NotFound, SanicException
from sanic.response import HTTPResponse

from bot.careteam import patient_views
from bot.careteam.accounts import Accounts, Gate, Policy, Session, csrf_ok
from bot.careteam.notifier import Notifier, NotifierSettings
from bot.careteam.patients import Patients
from bot.careteam.recorder import Recorder
from bot.careteam.store import PAGE_SIZE, STATUSES, EscalationError, EscalationStore, Page, Query, utcnow
from bot.careteam.transcript import transcript
from bot.database import create_engine
from bot.logging_safety import UNSAFE_CATEGORIES, visible

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "triage_careteam_session"
LOGIN_COOKIE = "triage_careteam_login"
#: Sent by the queue page's own refresh (static/queue.js): not a user action, so the idle clock keeps running.
AUTO_REFRESH_HEADER = "X-Triage-Auto-Refresh"
#: The same view by the same user within this time is one audit entry (the queue refreshes every 15 s).
AUDIT_FOLD = dt.timedelta(minutes=5)
#: Banners on the escalation page, by the code in `?error=`; any other code shows nothing.
CHANGE_ERRORS = {
    "note_required": "Say how it was resolved: a note is required.",
    "note_empty": "The note was empty: nothing was added.",
    "already_acknowledged": "Someone has acknowledged it already: the page now shows who.",
    "already_resolved": "It is resolved already: the page now shows who resolved it.",
    "changed": "It changed while you were reading: check the page again, then retry.",
    "not_saved": "That change was not saved: reload the page and try again.",
    "not_attached": "Not attached: check the medical record number (the patient must be enrolled).",
}
#: Which code an EscalationError from the store gets, by a phrase of its message (first match wins).
_ERROR_CODES = (
    ("note is required", "note_required"),
    ("note is empty", "note_empty"),
    ("already acknowledged", "already_acknowledged"),
    ("already resolved", "already_resolved"),
    ("changed meanwhile", "changed"),
)
#: Login page messages, by `?ended=`.
LOGIN_NOTICES = {"session": "Your session ended (no activity for a while, or logged out elsewhere): log in again."}
MAX_NOTE = 2000
#: Highest queue page number read from a request (a larger one shows this page, empty).
MAX_PAGE = 100_000
LEVELS = ("emergency", "call_now", "unclear")
LEVEL_WORDS = {"emergency": "Emergency", "call_now": "Call now", "unclear": "Unclear", "mention": "Mention"}
CHANNELS = ("web", "sms")
CSV_COLUMNS = ("id", "patient", "channel", "level", "status", "symptoms", "messages", "first_message_at",
               "last_message_at", "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at")  # fmt: skip
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes browsers send Origin: null on our own forms
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[HTTPResponse]])


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    secure_cookies: bool = True
    policy: Policy = Policy()  # noqa: RUF009 (frozen, so one shared default is safe)
    notifier: NotifierSettings | None = None
    refresh_s: int = 15


def create_app(settings: Settings, name: str = "careteam") -> Sanic:
    app = Sanic(name, configure_logging=False)
    app.config.REQUEST_MAX_SIZE = 64 * 1024
    app.config.FALLBACK_ERROR_FORMAT = "text"
    engine = create_engine(settings.database_url)
    store = EscalationStore(engine=engine)
    accounts = Accounts(engine, settings.policy)
    roster = Patients(engine)
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    templates.globals.update(level_words=LEVEL_WORDS, age=age, when=when, refresh_s=settings.refresh_s)
    app.static("/static", str(HERE / "static"), name="static")
    recorder = Recorder(lambda: store)

    def page(template: str, status: int = 200, **values: Any) -> HTTPResponse:
        return response.html(templates.get_template(template).render(**values), status=status)

    def address(request: Request) -> str:
        # remote_addr is the client named by the proxies' X-Forwarded-For when SANIC_PROXIES_COUNT is set
        # (empty otherwise); ip is the peer, which behind a proxy is the proxy for everyone.
        return visible(str(request.remote_addr or request.ip or "unknown"))[:64]

    async def db(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(function, *args, **kwargs)

    def login_required(admin: bool = False) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            @wraps(handler)
            async def wrapper(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
                cookie = request.cookies.get(SESSION_COOKIE)
                user_action = request.headers.get(AUTO_REFRESH_HEADER) != "1"
                session = await db(accounts.session, cookie, touch=user_action)
                if session is None:
                    if request.headers.get("X-Requested-With") == "fetch" or request.method != "GET":
                        return response.text("Your session has ended: log in again.", status=401)
                    return response.redirect("/login?ended=session" if cookie else "/login")
                where, path = address(request), visible(request.path)
                if admin and not session.user.is_admin:
                    await db(accounts.audit, session.user.username, "denied", detail=path, address=where)
                    return page("error.html", status=403, session=session, message="Only an admin may see this.")
                if request.method == "POST" and not _same_origin(request):
                    await db(accounts.audit, session.user.username, "origin_refused", detail=path, address=where)
                    return page("error.html", status=403, session=session, message="Request from another site.")
                if request.method == "POST" and not csrf_ok(session, request.form.get("csrf_token")):
                    await db(accounts.audit, session.user.username, "csrf_refused", detail=path, address=where)
                    return page(
                        "error.html", status=403, session=session, message="The form had expired: reload and try again."
                    )
                request.ctx.session = session
                return await handler(request, *args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorate

    def audit(request: Request, action: str, **fields: Any) -> Awaitable[None]:
        session: Session = request.ctx.session
        return db(accounts.audit, session.user.username, action, address=address(request), **fields)  # type: ignore[no-any-return]

    # -- logging in and out -------------------------------------------------------------------------

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        return response.text("ok")

    @app.get("/login")
    async def login_page(request: Request) -> HTTPResponse:
        return _login_form(page, settings, message="", notice=LOGIN_NOTICES.get(request.args.get("ended", ""), ""))

    @app.post("/login")
    async def login(request: Request) -> HTTPResponse:
        sent = request.form.get("csrf_token") or ""
        expected = request.cookies.get(LOGIN_COOKIE) or ""
        username = visible((request.form.get("username") or "").strip().lower())[:64]
        where = address(request)
        if not (sent and expected and secrets.compare_digest(sent, expected)) or not _same_origin(request):
            await db(accounts.audit, username or "-", "login_refused", address=where)
            return _login_form(page, settings, "The form had expired: try again.", status=403)
        password = request.form.get("password") or ""
        gate: Gate = await db(accounts.gate, username, where)
        if gate.refused:
            await db(accounts.audit, username or "-", "login_throttled", address=where)
            return _throttled(page, settings, gate)
        # A flood of failures slows every attempt, known name or not, rather than locking anyone out.
        await asyncio.sleep(gate.delay_s)
        user = await db(accounts.authenticate, username, password, where)
        if user is None:
            await db(accounts.audit, username or "-", "login_failed", address=where)
            return _login_form(page, settings, "Wrong username or password.", status=401)
        token = await db(accounts.start_session, user)
        await db(accounts.audit, user.username, "login", address=where)
        answer = response.redirect("/")
        _set_cookie(answer, SESSION_COOKIE, token, settings)
        del answer.cookies[LOGIN_COOKIE]
        return answer

    @app.post("/logout")
    @login_required()
    async def logout(request: Request) -> HTTPResponse:
        await audit(request, "logout")
        await db(accounts.end_session, request.cookies.get(SESSION_COOKIE))
        answer = response.redirect("/login")
        del answer.cookies[SESSION_COOKIE]
        return answer

    # -- the queue ----------------------------------------------------------------------------------

    # One page of rows at a time, always with the total: the queue never hides rows without saying so.
    @app.get("/")
    @login_required()
    async def queue(request: Request) -> HTTPResponse:
        query = _paged(request)
        listing = await db(store.page, query)
        await audit(request, "view_queue", detail=f"{_describe(query)}; page {listing.number}")
        patients = await db(patient_views.cards, roster, listing.items)
        return page("queue.html", session=request.ctx.session, items=listing.items, listing=listing, query=query,
                    levels=LEVELS, channels=CHANNELS, statuses=("open", *STATUSES, "all"), now=utcnow(),
                    patients=patients)  # fmt: skip

    @app.get("/queue/rows")
    @login_required()
    async def queue_rows(request: Request) -> HTTPResponse:
        # Rows of patients, so audited like the page; the page refreshing itself every few seconds folds
        # into one entry per view and AUDIT_FOLD, whatever the request says it is. The range and the
        # total travel in headers, for the page's "showing 1-50 of 612" line.
        query = _paged(request)
        listing = await db(store.page, query)
        session: Session = request.ctx.session
        await db(accounts.audit_view, session.user.username, "view_queue_rows",
                 f"{_describe(query)}; page {listing.number}", address(request), AUDIT_FOLD,
                 same_as=("view_queue",))  # fmt: skip
        patients = await db(patient_views.cards, roster, listing.items)
        answer = page("_rows.html", items=listing.items, now=utcnow(), patients=patients)
        answer.headers.update(_range_headers(listing))
        return answer

    @app.get("/export.csv")
    @login_required()
    async def export(request: Request) -> HTTPResponse:
        query = _query(request)
        try:
            items = await db(store.queue, Query(query.status, query.level, query.channel, query.search, limit=100_000))
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(CSV_COLUMNS)
            for item in items:
                writer.writerow([_cell(value) for value in (
                    item.id, item.sender_id, item.channel, item.level, item.status, "; ".join(item.terms),
                    item.message_count, item.first_message_at.isoformat(), item.last_message_at.isoformat(),
                    item.acknowledged_by or "", item.acknowledged_at.isoformat() if item.acknowledged_at else "",
                    item.resolved_by or "", item.resolved_at.isoformat() if item.resolved_at else "",
                )])  # fmt: skip
        except Exception as error:
            # The audit log says what left the app: a failed export is recorded as failed, with no rows.
            await audit(request, "export_csv_failed", detail=f"{type(error).__name__}; {_describe(query)}")
            raise
        # Recorded before the file is handed over: if the audit cannot be written, nothing is exported.
        await audit(request, "export_csv", detail=f"{len(items)} rows; {_describe(query)}")
        stamp = utcnow().strftime("%Y%m%d-%H%M")
        return response.text(
            buffer.getvalue(),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="escalations-{stamp}.csv"'},
        )

    # -- one escalation -----------------------------------------------------------------------------

    @app.get("/escalations/<escalation_id:int>")
    @login_required()
    async def escalation(request: Request, escalation_id: int) -> HTTPResponse:
        try:
            item = await db(store.get, escalation_id)
        except EscalationError as error:
            raise NotFound(str(error)) from None
        history = await db(store.history, escalation_id)
        recorded = await db(store.messages, escalation_id)
        # A patient's escalation may hold messages from several of their conversations (web, their own
        # and a caregiver's number): the transcript shows each, in time order.
        senders = list(dict.fromkeys([item.sender_id, *(m["sender_id"] for m in recorded if m["sender_id"])]))
        if item.is_incident:
            turns = await db(transcript, engine, item.sender_id)
        else:
            turns = await db(patient_views.conversations, engine, senders)
        patients = await db(patient_views.cards, roster, [item])
        escalated_ids = {message["message_id"] for message in recorded}
        await audit(request, "view_transcript", patient=item.sender_id, escalation_id=item.id)
        return page("escalation.html", session=request.ctx.session, item=item, turns=turns, history=history,
                    escalated_ids=escalated_ids, recorded=recorded, now=utcnow(), patients=patients, senders=senders,
                    error=CHANGE_ERRORS.get(request.args.get("error", ""), ""))  # fmt: skip

    async def change(request: Request, escalation_id: int, action: str) -> HTTPResponse:
        note = (request.form.get("note") or "").strip()[:MAX_NOTE]
        called = (request.form.get("called") or "").strip()[:20]
        if action == "acknowledge" and called:
            # Who called back and when are the acknowledgement's user and time; the number goes in its note.
            note = f"Called the patient back on {called}." + (f" {note}" if note else "")
        user = request.ctx.session.user.username
        try:
            item = await db(store.get, escalation_id)
            if action == "acknowledge":
                await db(store.acknowledge, escalation_id, user, note)
            elif action == "resolve":
                await db(store.resolve, escalation_id, user, note)
            else:
                await db(store.add_note, escalation_id, user, note)
        except EscalationError as error:
            await audit(request, f"{action}_refused", escalation_id=escalation_id, detail=_error_code(error))
            return response.redirect(f"/escalations/{escalation_id}?error={_error_code(error)}")
        await audit(request, action, patient=item.sender_id, escalation_id=escalation_id, detail=note)
        return response.redirect(f"/escalations/{escalation_id}")

    @app.post("/escalations/<escalation_id:int>/acknowledge")
    @login_required()
    async def acknowledge(request: Request, escalation_id: int) -> HTTPResponse:
        return await change(request, escalation_id, "acknowledge")

    @app.post("/escalations/<escalation_id:int>/resolve")
    @login_required()
    async def resolve(request: Request, escalation_id: int) -> HTTPResponse:
        return await change(request, escalation_id, "resolve")

    @app.post("/escalations/<escalation_id:int>/note")
    @login_required()
    async def note(request: Request, escalation_id: int) -> HTTPResponse:
        return await change(request, escalation_id, "note")

    patient_views.register(app, patient_views.Tools(page, login_required, audit, db, address, store, engine))

    # -- admin --------------------------------------------------------------------------------------

    @app.get("/admin")
    @login_required(admin=True)
    async def admin(request: Request) -> HTTPResponse:
        who = (request.args.get("user") or "").strip()[:64]
        patient = (request.args.get("patient") or "").strip()[:255]
        entries = await db(accounts.audit_entries, who, patient)
        users = await db(accounts.users)
        outbox = await db(store.outbox_status)
        await audit(request, "view_audit_log", patient=patient or None, detail=f"user={who}" if who else "")
        receiver = settings.notifier.url if settings.notifier else ""
        return page("admin.html", session=request.ctx.session, entries=entries, users=users, outbox=outbox,
                    who=who, patient=patient, notify_url=receiver)  # fmt: skip

    # -- errors, headers, background work -----------------------------------------------------------

    @app.exception(NotFound)
    async def not_found(request: Request, exception: Exception) -> HTTPResponse:
        return response.text("Not found.", status=404)

    @app.exception(SanicException)
    async def refused(request: Request, exception: SanicException) -> HTTPResponse:
        status = int(getattr(exception, "status_code", 400) or 400)
        return response.text(_plain_error(status), status=status)

    @app.exception(Exception)
    async def failed(request: Request, exception: Exception) -> HTTPResponse:
        log.exception("care-team app: %s %s failed", request.method, request.path)
        return response.text("Something went wrong; it has been logged. Try again.", status=500)

    @app.on_response
    async def headers(request: Request, answer: HTTPResponse) -> None:
        for key, value in SECURITY_HEADERS.items():
            answer.headers.setdefault(key, value)

    @app.after_server_start
    async def background(app: Sanic, loop: Any) -> None:
        app.ctx.stop = asyncio.Event()
        if settings.notifier is not None:
            app.add_task(Notifier(store, settings.notifier).run(app.ctx.stop))
        app.add_task(_drain_spool(recorder, app.ctx.stop))

    @app.before_server_stop
    async def stop_background(app: Sanic, loop: Any) -> None:
        app.ctx.stop.set()

    return app


async def _drain_spool(recorder: Recorder, stop: asyncio.Event, every_s: float = 5.0) -> None:
    """Escalations the assistant had to spool while the database was unavailable reach it from here too
    (the assistant also drains the spool at its next escalation)."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(recorder.drain)
        except Exception as error:
            log.warning("escalation spool not written yet: %s", type(error).__name__)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)


def _login_form(
    page: Callable[..., HTTPResponse], settings: Settings, message: str, status: int = 200, notice: str = ""
) -> HTTPResponse:
    token = secrets.token_urlsafe(32)
    answer = page("login.html", status=status, csrf_token=token, message=message, notice=notice, session=None)
    _set_cookie(answer, LOGIN_COOKIE, token, settings)
    return answer


def _throttled(page: Callable[..., HTTPResponse], settings: Settings, gate: Gate) -> HTTPResponse:
    """429 with how long to wait. The same for every name, known or not, so it tells a guesser nothing."""
    seconds = max(math.ceil((gate.retry_after or dt.timedelta()).total_seconds()), 1)
    wait = f"{seconds} seconds" if seconds < 120 else f"{(seconds + 59) // 60} minutes"
    message = f"Too many failed attempts from this computer: wait {wait} and try again."
    answer = _login_form(page, settings, message, status=429)
    answer.headers["Retry-After"] = str(seconds)
    return answer


def _set_cookie(answer: HTTPResponse, name: str, value: str, settings: Settings) -> None:
    answer.cookies[name] = value
    cookie = answer.cookies[name]
    cookie["httponly"] = True
    cookie["samesite"] = "Strict"
    cookie["path"] = "/"
    if settings.secure_cookies:
        cookie["secure"] = True


def _same_origin(request: Request) -> bool:
    """A POST from a page of this app: the Origin header, when the browser sends one, names this host."""
    origin = request.headers.get("Origin")
    if origin is None:  # not sent by this browser for this request; SameSite=Strict and the token still hold
        return True
    host = request.headers.get("Host", "")
    return bool(origin.split("://", 1)[-1] == host)


def _query(request: Request) -> Query:
    status = request.args.get("status", "open")
    level = request.args.get("level", "")
    channel = request.args.get("channel", "")
    return Query(
        status=status if status in ("open", "all", *STATUSES) else "open",
        level=level if level in LEVELS else "",
        channel=channel if channel in CHANNELS else "",
        search=(request.args.get("q") or "").strip()[:100],
    )


def _paged(request: Request) -> Query:
    """The filters of `_query` and the page asked for (`?page=2`), `PAGE_SIZE` rows a page."""
    try:
        number = max(int(request.args.get("page", "1")), 1)
    except ValueError:
        number = 1
    query = _query(request)
    return Query(query.status, query.level, query.channel, query.search, limit=PAGE_SIZE,
                 offset=min(number - 1, MAX_PAGE) * PAGE_SIZE)  # fmt: skip


def _range_headers(listing: Page) -> dict[str, str]:
    return {
        "X-Total-Count": str(listing.total),
        "X-Showing": f"{listing.first}-{listing.last}",
        "X-Page": f"{listing.number}/{listing.pages}",
    }


def _describe(query: Query) -> str:
    parts = [f"status={query.status}"]
    parts += [f"{key}={value}" for key, value in (("level", query.level), ("channel", query.channel)) if value]
    if query.search:
        parts.append(f"search={query.search!r}")
    return "; ".join(parts)


#: First characters that make a spreadsheet read a cell as a formula (Excel, LibreOffice, Google Sheets;
#: ";" separates arguments in some locales' formulas), after NFKC, which turns the fullwidth and small
#: forms ("＝", "﹢", "＠") into these.
_FORMULA_STARTS = frozenset("=+-@;\t\r\n")


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: never a formula, no control characters.

    Control characters (a NUL in a patient id made the csv module fail the whole export) are written
    as visible escapes (`\\x00`). A cell is prefixed with "'" when its first character, or the first
    after leading spaces and invisible characters, reads as a formula start once NFKC-normalised, and
    also whenever it starts with a space or an invisible character: spreadsheets differ in what they
    skip before looking for "=", and a clinician's patient id never needs to.
    """
    text = str(value)
    if not text:
        return text
    first = text[0]
    hidden_start = first.isspace() or unicodedata.category(first) in UNSAFE_CATEGORIES or not first.isprintable()
    shown = visible(text)
    if hidden_start or unicodedata.normalize("NFKC", text.lstrip()[:8])[:1] in _FORMULA_STARTS:
        return "'" + shown
    return shown


def _error_code(error: EscalationError) -> str:
    message = str(error)
    return next((code for phrase, code in _ERROR_CODES if phrase in message), "not_saved")


def _plain_error(status: int) -> str:
    if status == 413:
        return "Request too large."
    if status == 405:
        return "Method not allowed."
    return "Bad request."


def age(then: dt.datetime, now: dt.datetime) -> str:
    """Waiting time in words: '45 s', '12 min', '3 h 05 min', '2 d 4 h'."""
    seconds = max(int((now - then).total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def when(moment: dt.datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")
