"""The HTTP API (`/api/v1`): JSON in the shapes of the CLI's `--json` (README "JSON shapes"),
authenticated by `Authorization: Bearer TOKEN`. Viewer: reads. Agent: exemptions, static/dynamic,
class, notes. Admin: also adding and deleting subscribers, the import, realms and permits,
mobile MTA blocks. Every change names the staff member in the audit log, with via = api."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from radius_op25b.services.staff import Member
from radius_op25b.web.app import WebState

router = APIRouter(prefix="/api/v1")

Text = Annotated[str, Field(min_length=1, max_length=2000)]
Name = Annotated[str, Field(min_length=1, max_length=253)]


def state_of(request: Request) -> WebState:
    state: WebState = request.app.state.op25b
    return state


def bearer(request: Request) -> Member:
    """The staff member of the request's API token; 401 without a valid one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    member = state_of(request).staff().for_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if member is None:
        raise HTTPException(401, "a valid API token is required (Authorization: Bearer TOKEN)", {"WWW-Authenticate": "Bearer"})
    return member


def role(needed: str) -> Any:
    def check(member: Annotated[Member, Depends(bearer)]) -> Member:
        if not member.may(needed):
            raise HTTPException(403, f"{member.name} is a {member.role}; this needs the {needed} role")
        return member

    return Depends(check)


Viewer = Annotated[Member, role("viewer")]
Agent = Annotated[Member, role("agent")]
Admin = Annotated[Member, role("admin")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Change(Strict):
    at_next_login: bool = Field(False, description="apply at the customer's next login: no CoA, no Disconnect now")


class ExemptionBody(Change):
    reason: Text
    for_: Annotated[str | None, Field(alias="for", max_length=32, description="e.g. 30d, 12h, 2w")] = None
    until: Annotated[str | None, Field(max_length=64, description="ISO date (its end, UTC) or time")] = None
    permanent: bool = False
    extend: bool = Field(False, description="move the end of the active exemption")


class ReasonBody(Change):
    reason: Text


class StaticBody(Change):
    addresses: Annotated[list[Annotated[str, Field(max_length=64)]], Field(min_length=1, max_length=64)]


class ClassBody(Change):
    class_: Annotated[Literal["full", "mobile", "none", "default"], Field(alias="class")]


class NoteBody(Strict):
    note: Annotated[str, Field(max_length=2000)]


class SubscriberBody(Change):
    username: Name
    realm: Annotated[str | None, Field(max_length=253)] = None
    static: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)] = []
    class_: Annotated[Literal["full", "mobile", "none"] | None, Field(alias="class")] = None
    note: Annotated[str | None, Field(max_length=2000)] = None


def created(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse(data, status_code=201)


# --- reads --------------------------------------------------------------------------------------------


@router.get("/subscribers", summary="search subscribers by username prefix, or by address")
def search(
    request: Request,
    member: Viewer,
    q: Annotated[str, Query(min_length=1, max_length=253, description="a username prefix, or an IP address")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    desk = state_of(request).desk(member, "api")
    try:
        ipaddress.ip_address(q.strip())
    except ValueError:
        return {"query": q, "kind": "username", **desk.list_subscribers(prefix=q, limit=limit)}
    return {"query": q, "kind": "address", **desk.find_ip(q)}


@router.get("/subscribers/{username}", summary="one subscriber (the `subscriber show --json` shape)")
def show(request: Request, member: Viewer, username: str) -> dict[str, Any]:
    return state_of(request).desk(member, "api").show_subscriber(username)


@router.get("/subscribers/{username}/explain", summary="the decision a login would get (`policy explain --json`)")
def explain(
    request: Request,
    member: Viewer,
    username: str,
    framed_ip: Annotated[str | None, Query(max_length=64)] = None,
    nas: Annotated[str | None, Query(max_length=100)] = None,
    at: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    return state_of(request).desk(member, "api").explain(username, framed_ip=framed_ip, nas=nas, at=at)


@router.get("/sessions/who-had/{address}", summary="who held an address at a time")
def who_had(
    request: Request, member: Viewer, address: str, at: Annotated[str | None, Query(max_length=64)] = None
) -> dict[str, Any]:
    return state_of(request).desk(member, "api").who_had(address, at=at)


@router.get("/exemptions", summary="active exemptions, soonest end first")
def exemptions(
    request: Request, member: Viewer, expiring_within: Annotated[str | None, Query(max_length=32)] = None
) -> dict[str, Any]:
    return state_of(request).desk(member, "api").exemptions(expiring_within=expiring_within)


@router.get("/audit", summary="the change log, newest last")
def audit(
    request: Request,
    member: Viewer,
    user: Annotated[str | None, Query(max_length=253)] = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 200,
) -> dict[str, Any]:
    return state_of(request).desk(member, "api").audit(user=user, since=since, action=action, limit=limit)


# --- changes (each returns its live effect: live_sessions, at_next_login) ---------------------------


@router.post("/subscribers/{username}/exemptions", status_code=201, summary="grant the exemption (or move its end)")
def exempt(request: Request, member: Agent, username: str, body: ExemptionBody) -> JSONResponse:
    desk = state_of(request).desk(member, "api", at_next_login=body.at_next_login)
    result = desk.exempt(
        username, reason=body.reason, until=body.until, duration=body.for_, permanent=body.permanent, extend=body.extend
    )
    return created(result.json())


@router.post("/subscribers/{username}/unexempt", summary="end the active exemption now")
def unexempt(request: Request, member: Agent, username: str, body: ReasonBody) -> dict[str, Any]:
    return state_of(request).desk(member, "api", at_next_login=body.at_next_login).unexempt(username, reason=body.reason).json()


@router.put("/subscribers/{username}/static", summary="static IP upgrade: removes the filter")
def set_static(request: Request, member: Agent, username: str, body: StaticBody) -> dict[str, Any]:
    return state_of(request).desk(member, "api", at_next_login=body.at_next_login).set_static(username, body.addresses).json()


@router.delete("/subscribers/{username}/static", summary="back to a dynamic IP: the filter applies again")
def set_dynamic(request: Request, member: Agent, username: str, at_next_login: bool = False) -> dict[str, Any]:
    return state_of(request).desk(member, "api", at_next_login=at_next_login).set_dynamic(username).json()


@router.put("/subscribers/{username}/class", summary="override the class, or `default`")
def set_class(request: Request, member: Agent, username: str, body: ClassBody) -> dict[str, Any]:
    cls = None if body.class_ == "default" else body.class_
    return state_of(request).desk(member, "api", at_next_login=body.at_next_login).set_class(username, cls).json()


@router.put("/subscribers/{username}/note", summary="replace the note (empty clears it)")
def set_note(request: Request, member: Agent, username: str, body: NoteBody) -> dict[str, Any]:
    return state_of(request).desk(member, "api").set_note(username, body.note).json()


@router.post("/subscribers", status_code=201, summary="add a subscriber (admin: provisioning)")
def add(request: Request, member: Admin, body: SubscriberBody) -> JSONResponse:
    desk = state_of(request).desk(member, "api", at_next_login=body.at_next_login)
    result = desk.add_subscriber(body.username, realm=body.realm, static=body.static, cls=body.class_, note=body.note)
    return created(result.json())


@router.delete("/subscribers/{username}", summary="delete a subscriber (admin)")
def delete(
    request: Request,
    member: Admin,
    username: str,
    reason: Annotated[str, Query(min_length=1, max_length=1000)],
    at_next_login: bool = False,
) -> dict[str, Any]:
    return state_of(request).desk(member, "api", at_next_login=at_next_login).delete_subscriber(username, reason=reason).json()


@router.post("/import", summary="CSV import, all or nothing (admin); the body is the CSV text")
def import_csv(
    request: Request,
    member: Admin,
    body: Annotated[str, Body(media_type="text/csv", max_length=64 << 20)],
    source: Annotated[str, Query(min_length=1, max_length=200)] = "api",
    dry_run: bool = False,
    update: bool = False,
    no_header: bool = False,
) -> dict[str, Any]:
    desk = state_of(request).desk(member, "api")
    return desk.import_csv(body, source, header=not no_header, update=update, dry_run=dry_run).json()
