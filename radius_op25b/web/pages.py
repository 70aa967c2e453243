"""The support desk's pages: server-rendered HTML over the same desk operations as the API
(services/desk.py), usable without JavaScript, in English and Japanese (web/i18n.py).

Who is asking: a session cookie from the sign-in form, or a carrier's SSO header believed only
from `[web] trusted_proxies`. Every form carries the session's CSRF token (the sign-in form a
token of its own, in a cookie beside it); a POST without the right one is 403 and changes nothing.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from radius_op25b.errors import InvalidInput
from radius_op25b.services.desk import Result, field_changes, live_lines
from radius_op25b.services.staff import Member
from radius_op25b.store.audit import ACTION_GROUPS, ACTIONS
from radius_op25b.web import i18n
from radius_op25b.web.auth import SESSION_COOKIE, WebSession, csrf_ok, trusted_proxy

router = APIRouter(include_in_schema=False)  # pages are not part of the API's OpenAPI

LANG_COOKIE = "lang"
SIGN_IN_COOKIE = "op25b_signin"  # the sign-in form's CSRF token, before there is a session
BAD_TOKEN = "missing or wrong form token"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
EXPIRING_CHOICES = ("1d", "7d", "30d", "all")
STYLESHEET = (Path(__file__).parent / "static" / "op25b.css").read_bytes()

templates = Environment(
    loader=PackageLoader("radius_op25b.web", "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def when(value: str | None) -> str:
    """An ISO time as an agent reads it: 2026-12-01 09:00 UTC."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment.utcoffset() is not None else f"{moment:%Y-%m-%d %H:%M}"


templates.filters["when"] = when


# --- who is asking ----------------------------------------------------------------------------------


def state_of(request: Request) -> Any:
    return request.app.state.op25b  # WebState (web/app.py imports this module: no import back)


@dataclass
class Visit:
    """One page request: its language, who signed in (if anyone), and cookies the answer sets."""

    request: Request
    lang: str
    member: Member | None = None
    session: WebSession | None = None
    new_sid: str | None = None  # a session opened for a trusted SSO header
    cookies: dict[str, str] = field(default_factory=dict)

    def t(self, text: str, **values: object) -> str:
        return i18n.translate(self.lang, text, **values)


def language(request: Request) -> tuple[str, dict[str, str]]:
    asked = request.query_params.get("lang")
    lang = i18n.choose(request.headers.get("accept-language"), request.cookies.get(LANG_COOKIE), asked)
    return lang, ({LANG_COOKIE: asked} if asked in i18n.LANGUAGES else {})


def peer(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def visit(request: Request) -> Visit:
    """Who is asking. The SSO header counts only from a trusted proxy (the TCP peer, never a
    forwarded-for header); a session's member is read again so a disabled one is out at once."""
    state = state_of(request)
    lang, cookies = language(request)
    seen = Visit(request, lang, cookies=cookies)
    sid = request.cookies.get(SESSION_COOKIE)
    session = state.sessions.get(sid)
    header = state.config.web.trusted_user_header
    if header and trusted_proxy(state.config.web, peer(request)) and request.headers.get(header):
        name = request.headers[header].strip()
        member = state.staff().member(name)
        if member is None:
            raise HTTPException(403, seen.t("{name} is not an enabled staff member", name=name[:100]))
        if session is None or session.member != member:
            state.sessions.close(sid)
            seen.new_sid, session = state.sessions.open(member)
        seen.member, seen.session = member, session
        return seen
    if session is not None:
        member = state.staff().member(session.member.name)
        if member is None or member.role != session.member.role:
            state.sessions.close(sid)  # disabled, or a new role: sign in again
            return seen
        seen.member, seen.session = member, session
    return seen


def changer(request: Request, token: str) -> Visit:
    """The visit of a POST that changes something: a session, its CSRF token, the agent role."""
    seen = visit(request)
    if seen.member is None or seen.session is None or seen.new_sid is not None or not csrf_ok(seen.session, token):
        raise HTTPException(403, BAD_TOKEN)
    member = seen.member
    if not member.may("agent"):
        raise HTTPException(403, f"{member.name} is a {member.role}; this needs the agent role")
    return seen


# --- answers --------------------------------------------------------------------------------------


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def finish(seen: Visit, response: Response) -> Response:
    request = seen.request
    https = request.url.scheme == "https"
    for name, value in seen.cookies.items():
        response.set_cookie(name, value, max_age=365 * 86400, path="/", samesite="strict", secure=https, httponly=True)
    if seen.new_sid is not None:
        set_session(response, request, seen.new_sid)
    return secure(response)


def set_session(response: Response, request: Request, sid: str) -> None:
    response.set_cookie(SESSION_COOKIE, sid, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")


def here(request: Request) -> str:
    return request.url.path


def switch_links(path: str, request: Request) -> dict[str, str]:
    query = {k: v for k, v in request.query_params.items() if k != "lang"} if request.method == "GET" else {}
    return {lang: f"{path}?{urlencode({**query, 'lang': lang})}" for lang in i18n.LANGUAGES}


def render(
    seen: Visit, name: str, *, status: int = 200, path: str | None = None, headers: Any = None, **context: Any
) -> Response:
    request = seen.request
    html = templates.get_template(name).render(
        t=seen.t,
        lang=seen.lang,
        member=seen.member,
        csrf=seen.session.csrf if seen.session is not None else "",
        nav=request.url.path,
        switch=switch_links(path or here(request), request),
        **context,
    )
    return finish(seen, HTMLResponse(html, status_code=status, headers=headers))


def to_sign_in(seen: Visit) -> Response:
    return finish(seen, RedirectResponse("/sign-in", status_code=303))


def error_page(request: Request, status: int, message: str, headers: Any = None) -> HTMLResponse:
    """The page for a refusal (the app's error handlers call it): the message, and that nothing
    changed. It reads no database: it must answer while the database is down."""
    lang, _ = language(request)
    session = state_of(request).sessions.get(request.cookies.get(SESSION_COOKIE))
    seen = Visit(request, lang, session.member if session else None, session)
    referer = urlsplit(request.headers.get("referer", ""))
    back = (referer.path or "/") if referer.netloc == request.url.netloc and request.method != "GET" else "/"
    try:
        response = render(
            seen,
            "error.html",
            status=status,
            headers=headers,
            status_code=status,
            message=seen.t(message),
            changed=request.method != "GET",
            back=back,
        )
    except Exception:  # noqa: BLE001  a broken template must not hide the refusal
        from html import escape

        response = HTMLResponse(f"<!doctype html><title>{status}</title><p>{escape(message)}</p>", status, headers=headers)
    assert isinstance(response, HTMLResponse)
    return response


@router.get("/static/op25b.css")
def stylesheet() -> Response:
    response = Response(STYLESHEET, media_type="text/css")
    response.headers["Cache-Control"] = "max-age=3600"
    return secure(response)


# --- signing in and out ----------------------------------------------------------------------------


@router.get("/")
def home(request: Request) -> Response:
    seen = visit(request)
    target = "/search" if seen.member is not None else "/sign-in"
    return finish(seen, RedirectResponse(target, status_code=303))


def sign_in_form(
    seen: Visit, *, status: int = 200, message: str | None = None, username: str = "", headers: Any = None
) -> Response:
    token = seen.request.cookies.get(SIGN_IN_COOKIE) or ""
    if len(token) != 43:
        token = secrets.token_urlsafe(32)
    response = render(seen, "sign_in.html", status=status, headers=headers, message=message, username=username, token=token)
    response.set_cookie(
        SIGN_IN_COOKIE, token, path="/sign-in", httponly=True, samesite="strict", secure=seen.request.url.scheme == "https"
    )
    return response


@router.get("/sign-in")
def sign_in_page(request: Request) -> Response:
    seen = visit(request)
    if seen.member is not None:
        return finish(seen, RedirectResponse("/search", status_code=303))
    return sign_in_form(seen)


@router.post("/sign-in")
def sign_in(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    state = state_of(request)
    seen = visit(request)
    expected = request.cookies.get(SIGN_IN_COOKIE)
    if not expected or not csrf or not secrets.compare_digest(expected.encode(), csrf.encode("utf-8", "replace")):
        raise HTTPException(403, BAD_TOKEN)
    address = peer(request)
    user = username.strip()[:253]
    wait = state.limit.wait_for(user, address)
    if wait > 0:
        message = seen.t("Too many failed sign-ins. Try again in {wait}.", wait=i18n.in_words(seen.lang, wait))
        retry = {"Retry-After": str(int(wait + 0.999))}
        return sign_in_form(seen, status=429, message=message, username=user, headers=retry)
    member = state.staff().sign_in(user, password)
    if member is None:
        state.limit.failed(user, address)
        return sign_in_form(seen, status=401, message=seen.t("wrong username or password"), username=user)
    state.limit.succeeded(user)
    state.sessions.close(request.cookies.get(SESSION_COOKIE))  # a fresh id on every sign-in (no fixation)
    sid, _ = state.sessions.open(member)
    response = finish(seen, RedirectResponse("/search", status_code=303))
    set_session(response, request, sid)
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return response


@router.post("/sign-out")
def sign_out(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    seen = visit(request)
    if seen.session is None or not csrf_ok(seen.session, csrf):
        raise HTTPException(403, BAD_TOKEN)
    state_of(request).sessions.close(request.cookies.get(SESSION_COOKIE))
    response = finish(Visit(request, seen.lang, cookies=seen.cookies), RedirectResponse("/sign-in", status_code=303))
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- reading ------------------------------------------------------------------------------------------


@router.get("/search")
def search(request: Request, q: Annotated[str, Query(max_length=253)] = "") -> Response:
    seen = visit(request)
    if seen.member is None:
        return to_sign_in(seen)
    desk = state_of(request).desk(seen.member, "web")
    query = q.strip()
    found: dict[str, Any] | None = None
    kind = None
    if query:
        try:
            ipaddress.ip_address(query)
        except ValueError:
            kind, found = "username", desk.list_subscribers(prefix=query, limit=50)
        else:
            kind, found = "address", {**desk.find_ip(query), "who_had": desk.who_had(query)}
    return render(seen, "search.html", q=query, kind=kind, found=found)


def disconnect_warnings(pushes: Any) -> list[dict[str, str]]:
    """The NASes whose sessions a change would Disconnect (from the desk's preview), once each."""
    found = {p.nas: p.why or "" for p in pushes if p.method == "disconnect"}
    return [{"nas": nas, "why": why} for nas, why in found.items()]


DECISION_WORDS = {
    "full": "Outbound port 25 is blocked (full OP25B).",
    "mobile": "Outbound port 25 is blocked towards mobile carriers' mail servers only (mobile OP25B).",
    "none": "No port 25 filter: the customer can send mail directly.",
}


@router.get("/subscribers/{username}")
def subscriber(request: Request, username: str) -> Response:
    seen = visit(request)
    if seen.member is None:
        return to_sign_in(seen)
    state = state_of(request)
    desk = state.desk(seen.member, "web")
    shown = desk.show_subscriber(username)
    decision = desk.explain(shown["username"])
    exempt = any(ex["active"] for ex in shown["exemptions"])
    return render(
        seen,
        "subscriber.html",
        sub=shown,
        decision=decision,
        decision_words=DECISION_WORDS.get(decision["class"], decision["class"]),
        exempt=exempt,
        may_change=seen.member.may("agent"),
        # The desk does the change in a transaction it rolls back: the same reckoning as the real one.
        exempt_warnings=disconnect_warnings(desk.preview_exempt(username)) if shown["sessions"] else [],
        unexempt_warnings=disconnect_warnings(desk.preview_unexempt(username)) if shown["sessions"] and exempt else [],
    )


@router.get("/exemptions")
def exemptions(request: Request, within: Annotated[str, Query(max_length=8)] = "7d") -> Response:
    seen = visit(request)
    if seen.member is None:
        return to_sign_in(seen)
    choice = within if within in EXPIRING_CHOICES else "7d"
    listed = state_of(request).desk(seen.member, "web").exemptions(expiring_within=None if choice == "all" else choice)
    return render(seen, "exemptions.html", listed=listed, within=choice, choices=EXPIRING_CHOICES)


def changes(before: Any, after: Any) -> list[tuple[str, str, str]]:
    """An audit entry's before -> after, one (field, before, after) per field that differs."""

    def shown(value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, list):
            return " ".join(map(str, value)) or "—"
        return str(value)

    if not isinstance(before, dict) and not isinstance(after, dict):
        return [] if before == after else [("", shown(before), shown(after))]
    old = before if isinstance(before, dict) else None
    new = after if isinstance(after, dict) else None
    return [(k, shown(o), shown(n)) for k, o, n in field_changes(old, new)]


@router.get("/audit")
def audit(
    request: Request,
    user: Annotated[str, Query(max_length=253)] = "",
    since: Annotated[str, Query(max_length=64)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    seen = visit(request)
    if seen.member is None:
        return to_sign_in(seen)
    desk = state_of(request).desk(seen.member, "web")
    found = desk.audit(user=user.strip() or None, since=since.strip() or None, action=action.strip() or None, limit=500)
    entries = [{**e, "changes": changes(e["before"], e["after"])} for e in reversed(found["entries"])]  # newest first
    actions = [*ACTION_GROUPS, *ACTIONS]
    return render(seen, "audit.html", entries=entries, user=user, since=since, action=action, actions=actions)


# --- changing ---------------------------------------------------------------------------------------


def result_page(seen: Visit, title: str, username: str, result: Result, summary: str) -> Response:
    desk = state_of(seen.request).desk(seen.member, "web")
    decision = desk.explain(username)
    path = f"/subscribers/{username}"
    return render(
        seen,
        "result.html",
        path=path,
        title=title,
        username=username,
        summary=summary,
        lines=live_lines(result.live),
        decision=decision,
        decision_words=DECISION_WORDS.get(decision["class"], decision["class"]),
    )


@router.post("/subscribers/{username}/exempt")
def exempt(
    request: Request,
    username: str,
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    duration: Annotated[str, Form()] = "",
    until: Annotated[str, Form()] = "",
    extend: Annotated[str, Form()] = "",
    at_next_login: Annotated[str, Form()] = "",
) -> Response:
    seen = changer(request, csrf)
    length, end = duration.strip() or None, until.strip() or None
    if (length is None) == (end is None):
        raise InvalidInput("Give either a Duration or an Until date.")
    desk = state_of(request).desk(seen.member, "web", at_next_login=bool(at_next_login))
    result = desk.exempt(username, reason=reason, duration=length, until=end, extend=bool(extend))
    name = result.data["username"]
    return result_page(seen, "Exemption granted", name, result, f"{name}: exempt {result.data['expires']}")


@router.post("/subscribers/{username}/unexempt")
def unexempt(
    request: Request,
    username: str,
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    at_next_login: Annotated[str, Form()] = "",
) -> Response:
    seen = changer(request, csrf)
    desk = state_of(request).desk(seen.member, "web", at_next_login=bool(at_next_login))
    result = desk.unexempt(username, reason=reason)
    name = result.data["username"]
    return result_page(seen, "Exemption ended", name, result, f"{name}: the exemption ended")
