"""The patient chat page at `/webhooks/web/`: static files from `webchat/`, plus `config.json` with the
emergency and care-team numbers from the settings and the page's texts in English and Spanish (from
knowledge/translations.csv). The page talks to the REST webhook on the same
server, so it needs no cross-origin access.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot import wording
from bot.settings import contacts

STATIC = Path(__file__).resolve().parent / "webchat"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
#: The page's own files only; no framing by other sites' pages unless embedded on purpose (see README).
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class WebChatInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "web"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        page = Blueprint(f"triage_web_{id(self)}", __name__)

        @page.route("/", methods=["GET"])
        async def index(request: Request) -> HTTPResponse:
            return _file("index.html")

        @page.route("/config.json", methods=["GET"])
        async def config(request: Request) -> HTTPResponse:
            numbers = contacts()
            body = {
                "emergency_number": numbers.emergency_number,
                "care_team_phone": numbers.care_team_phone,
                "strings": wording.page_strings(),
            }
            return response.json(body, headers=_HEADERS)

        @page.route("/<name:str>", methods=["GET"])
        async def asset(request: Request, name: str) -> HTTPResponse:
            return _file(name)

        return page


def _file(name: str) -> HTTPResponse:
    path = (STATIC / (name or "index.html")).resolve()
    if path.parent != STATIC or path.suffix not in _TYPES or not path.is_file():
        return response.json({"error": "not found"}, status=404)
    return response.raw(path.read_bytes(), content_type=_TYPES[path.suffix], headers=_HEADERS)
