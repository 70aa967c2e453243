"""`POST /api/v1/decide`: the OP25B decision for a FreeRADIUS that calls us from `post-auth`
through rlm_rest (deploy/freeradius-plugin/), in the JSON rlm_rest applies to the reply.

The web process holds the policy set exactly as `serve` does: a `services.policy.PolicyService`
(the special subscribers, realms, mobile MTA blocks, and its watcher thread that follows
LISTEN/NOTIFY on PostgreSQL, the audit log on SQLite). A request is decided in memory, never
with a database round trip, by the same calls as the proxy's `rewrite_accept`: `explain.request_for`,
`explain.held_realm`, `explain.decide` (or `decide_without_database` before the first load),
then `profiles.attributes_for` for the NAS's profile.

Body: JSON (`application/json`) or form-encoded (`application/x-www-form-urlencoded`, what the
shipped rlm_rest instance sends with `body = post`), the same fields either way; unknown fields
are refused (422); an empty form value is an absent field (FreeRADIUS expands a missing
attribute to "").

    user_name               the request's User-Name (required)
    framed_ip_address       the reply's Framed-IP-Address (static pools are matched on it)
    framed_ipv6_prefix      accepted and checked, not used: `serve` decides on IPv4 only
    delegated_ipv6_prefix   the same
    nas_ip_address          the NAS: a [[clients]] entry whose address or network holds it
    nas_identifier          the NAS: a [[clients]] entry of that name (tried first)

No matching client: the first client's profile (enforcement on), or `generic` with no clients.

Answer: 200 with `{"reply:<Attribute>": "value", ..., "reply:Class": {"op": "+=", "value":
"op25b:<class>"}}` - a single-valued attribute as a plain string (rlm_rest's `:=`, which
replaces the upstream's copy, as `managed_attributes = "replace"` does in `serve`), an attribute
the profile sends several times as `{"op": "+=", "value": [...]}`, a value with a `%` as an
object with `do_xlat: false`; our Class is added beside any Class already in the reply (`+=`).
204 (no body, so no Class tag) when the class is `none` and the profile sends nothing.
Any valid API token (viewer or higher), checked against the database once per TOKEN_TTL seconds
(a revoked token is refused here at most that long after). 503 when the web process holds no
policy service.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from radius_op25b.core import decision as d
from radius_op25b.core import profiles
from radius_op25b.core.clients import ClientTable
from radius_op25b.core.config import ClientConfig, Config
from radius_op25b.errors import StoreUnavailable
from radius_op25b.services import explain
from radius_op25b.services.policy import PolicyService
from radius_op25b.services.staff import Member, hash_token
from radius_op25b.web.api import bearer

log = logging.getLogger("op25b.decide")

router = APIRouter(prefix="/api/v1")

MAX_BODY = 8192  # bytes: the six fields fit in far less
TOKEN_TTL = 10.0  # seconds a checked token is trusted without the database (a revocation takes this long here)


class DecideBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_name: Annotated[str, Field(min_length=1, max_length=253)]
    framed_ip_address: ipaddress.IPv4Address | None = None
    framed_ipv6_prefix: ipaddress.IPv6Network | None = None
    delegated_ipv6_prefix: ipaddress.IPv6Network | None = None
    nas_ip_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    nas_identifier: Annotated[str | None, Field(max_length=253)] = None

    @field_validator(
        "framed_ip_address", "framed_ipv6_prefix", "delegated_ipv6_prefix", "nas_ip_address", "nas_identifier", mode="before"
    )
    @classmethod
    def _empty_is_absent(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None  # FreeRADIUS expands an absent attribute to ""
        if info.field_name.endswith("ipv6_prefix") and isinstance(value, str):
            return ipaddress.IPv6Network(value, strict=False)  # FreeRADIUS prints a prefix with host bits as given
        return value


class HeldPolicy:
    """The policy set of the web process: one PolicyService (and its watcher thread), started
    with the app and stopped with it; plus the client table for finding the NAS."""

    def __init__(self, config: Config, engine: Any, on_change: Callable[[], None] | None = None) -> None:
        self.config = config
        self.service = PolicyService(config, engine, on_change)
        self.clients = ClientTable(config.clients)
        self.by_name = {c.name: c for c in config.clients}
        self.fallback_profile = config.clients[0].profile if config.clients else "generic"
        self.tokens: dict[str, tuple[Member, float]] = {}  # token hash -> member, checked at (monotonic)

    def start(self) -> None:
        """Blocks until the first load was tried (a dead database is noticed within seconds;
        until it loads, policy.on_database_error decides, as in `serve`)."""
        self.service.start()

    def stop(self) -> None:
        self.service.close()

    def client_for(self, body: DecideBody) -> ClientConfig | None:
        if body.nas_identifier:
            client = self.by_name.get(body.nas_identifier)
            if client is not None:
                return client
        if body.nas_ip_address is not None:
            return self.clients.lookup(str(body.nas_ip_address))
        return None

    def decide(self, body: DecideBody) -> tuple[d.Decision, str, profiles.Attributes]:
        """The decision, the profile and its attributes, from the held set (as rewrite_accept)."""
        policy = self.service
        client = self.client_for(body)
        request = explain.request_for(body.user_name, body.framed_ip_address, client)
        if policy.loaded:
            subscriber = policy.special.get(request.username)
            realm = explain.held_realm(policy.realms, subscriber, request)
            decision = explain.decide(policy.config, request, subscriber, realm, policy.now())
        else:
            decision = d.decide_without_database(request, policy.config.policy)
        profile = client.profile if client is not None else self.fallback_profile
        return decision, profile, profiles.attributes_for(profile, decision, policy.ctx, policy.config.profiles)


def rest_json(attributes: profiles.Attributes, filter_class: d.FilterClass) -> dict[str, Any]:
    """rlm_rest's response format for the reply list."""
    grouped: dict[str, list[str]] = {}
    for name, value in attributes:
        grouped.setdefault(name, []).append(value)
    out: dict[str, Any] = {}
    for name, values in grouped.items():
        if len(values) > 1:
            out[f"reply:{name}"] = {"op": "+=", "do_xlat": False, "value": values}
        elif "%" in values[0]:
            out[f"reply:{name}"] = {"do_xlat": False, "value": values[0]}
        else:
            out[f"reply:{name}"] = values[0]
    out["reply:Class"] = {"op": "+=", "value": f"op25b:{filter_class}"}
    return out


# --- the app's lifespan ---------------------------------------------------------------------


def start(app: FastAPI, on_change: Callable[[], None] | None = None) -> HeldPolicy:
    """Start the held policy service for `app` (its WebState's config and engine)."""
    state = app.state.op25b
    held = HeldPolicy(state.config, state.engine, on_change)
    held.start()
    app.state.op25b_policy = held
    return held


def stop(app: FastAPI) -> None:
    held: HeldPolicy | None = getattr(app.state, "op25b_policy", None)
    if held is not None:
        held.stop()
        app.state.op25b_policy = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """`FastAPI(lifespan=decide.lifespan)`: what the plugin needs runs while the app does - the
    held policy set (decide), the accounting recorder, and with `[web] push_changes` the push
    worker that sends live changes to the sessions (as `serve` runs them)."""
    from radius_op25b.proxy.server import source_address
    from radius_op25b.services.push import PushWorker
    from radius_op25b.web import accounting

    loop = asyncio.get_running_loop()
    config: Config = app.state.op25b.config
    pushers: list[PushWorker] = []

    def changed() -> None:  # the policy watcher thread: a change may have queued push jobs
        for pusher in pushers:
            loop.call_soon_threadsafe(pusher.wake)

    held = await asyncio.to_thread(start, app, changed)
    accounting.start(app, loop)
    try:
        if config.web.push_changes:
            pusher = PushWorker(config, app.state.op25b.engine, loop, lambda: held.service.ctx, source=source_address(config, 4))
            await pusher.start()
            pushers.append(pusher)
            log.info("sending live changes (CoA/Disconnect) from this process: [web] push_changes = true")
        yield
    finally:
        for pusher in pushers:
            await pusher.close()
        accounting.stop(app)
        stop(app)


# --- the endpoint ---------------------------------------------------------------------------


def _token_key(request: Request) -> str | None:
    return _key_of(request.headers.get("authorization", ""))


def _key_of(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    return hash_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None


def _cached(request: Request, held: HeldPolicy | None) -> Member | None:
    return _cached_key(_token_key(request) if held is not None else None, held)


def _cached_key(key: str | None, held: HeldPolicy | None) -> Member | None:
    found = held.tokens.get(key) if held is not None and key is not None else None
    return found[0] if found is not None and time.monotonic() - found[1] < TOKEN_TTL else None


def _authenticate(request: Request, held: HeldPolicy | None) -> Member:
    """`api.bearer` (any valid token: every role is at least a viewer), remembered for TOKEN_TTL
    seconds so that a FreeRADIUS calling for every Accept costs no database read either. With
    the database down, a token seen before stays good: the held set keeps deciding, as in `serve`."""
    if held is None:
        return bearer(request)
    key = _token_key(request)
    found = held.tokens.get(key) if key is not None else None
    if found is not None and time.monotonic() - found[1] < TOKEN_TTL:
        return found[0]
    try:
        member = bearer(request)  # 401 unless valid
    except StoreUnavailable:
        if found is None:
            raise
        return found[0]
    if key is not None:
        if len(held.tokens) > 1024:
            held.tokens.clear()
        held.tokens[key] = (member, time.monotonic())
    return member


async def authenticate(request: Request) -> Member:
    """The caller of a plugin endpoint (decide, accounting): any valid token, cached."""
    held: HeldPolicy | None = getattr(request.app.state, "op25b_policy", None)
    member = _cached(request, held)
    if member is None:
        member = await asyncio.to_thread(_authenticate, request, held)  # the database: off the event loop
    return member


Body = TypeVar("Body", bound=BaseModel)


class FormError(ValueError):
    """A form body that is not one: undecodable, malformed, or a field given twice."""


def form_fields(raw: bytes) -> dict[str, str]:
    """A form-encoded body (rlm_rest's `body = post`) as fields, each given at most once."""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw), max_num_fields=32)
    except ValueError:  # UnicodeDecodeError is one
        raise FormError("malformed form body") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise FormError(f"{key}: given twice")
        fields[key] = value
    return fields


async def form_or_json(request: Request, model: type[Body]) -> Body:
    """The body as `model`: form-encoded (rlm_rest's `body = post`) or JSON; each field once."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise HTTPException(413, f"body over {MAX_BODY} bytes")
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        if kind == "application/x-www-form-urlencoded":
            return model.model_validate(form_fields(raw))
        if kind in ("application/json", ""):
            return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
    except FormError as exc:
        raise HTTPException(422, str(exc)) from None
    except ValueError:  # anything else a parser refuses (pydantic reports its own as ValidationError)
        raise HTTPException(422, "malformed form body") from None
    raise HTTPException(415, "send application/json or application/x-www-form-urlencoded")


@router.post(
    "/decide",
    responses={204: {"description": "class none and nothing to add"}},
    summary="The OP25B decision for rlm_rest (post-auth)",
)
async def decide(request: Request) -> Response:
    held: HeldPolicy | None = getattr(request.app.state, "op25b_policy", None)
    await authenticate(request)
    body = await form_or_json(request, DecideBody)
    if held is None:
        raise HTTPException(503, "this op25b web holds no policy set (the decide service is not started)")
    started = time.perf_counter()
    decision, profile, attributes = held.decide(body)
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "decide %s on %s: %s (%s) in %.3f ms",
            body.user_name,
            profile,
            decision.filter_class,
            decision.reason_kind,
            (time.perf_counter() - started) * 1e3,
        )
    if decision.filter_class is d.FilterClass.NONE and not attributes:
        return Response(status_code=204)
    return JSONResponse(rest_json(attributes, decision.filter_class))


class FastDecide:
    """ASGI middleware for the one hot request: `POST /api/v1/decide` from rlm_rest, answered
    without the framework's routing, dependency and response machinery (in the plugin benchmark
    that machinery was most of op25b web's CPU per Accept). Only the common case is answered
    here - a token checked within TOKEN_TTL and a form body that validates; everything else,
    every refusal included, goes on to the route above with the body replayed, so each error
    is answered in one place and the same way."""

    def __init__(self, app: Any, owner: FastAPI) -> None:
        self.app, self.owner = app, owner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/api/v1/decide":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more and size <= MAX_BODY:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        answer = self._answer(scope, b"".join(chunks)) if not more else None
        if answer is None:
            await self.app(scope, _replay(chunks, more, receive), send)
            return
        status, payload = answer
        headers = [(b"content-length", str(len(payload)).encode())]
        if payload:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _answer(self, scope: dict[str, Any], raw: bytes) -> tuple[int, bytes] | None:
        held: HeldPolicy | None = getattr(self.owner.state, "op25b_policy", None)
        headers = dict(scope["headers"])
        if (
            held is None
            or headers.get(b"content-type", b"").partition(b";")[0].strip().lower() != b"application/x-www-form-urlencoded"
        ):
            return None
        if _cached_key(_key_of(headers.get(b"authorization", b"").decode("latin-1")), held) is None:
            return None
        try:
            body = DecideBody.model_validate(form_fields(raw))
        except ValueError:  # FormError, ValidationError: the route answers it
            return None
        decision, _, attributes = held.decide(body)
        if decision.filter_class is d.FilterClass.NONE and not attributes:
            return 204, b""
        return 200, json.dumps(rest_json(attributes, decision.filter_class), separators=(",", ":")).encode()


def _replay(chunks: list[bytes], more: bool, receive: Any) -> Any:
    """An ASGI receive that gives the body read so far once, then reads on."""
    pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": more}]

    async def replayed() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replayed
