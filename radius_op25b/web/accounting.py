"""`POST /api/v1/accounting`: the accounting of a FreeRADIUS that runs the plugin
(deploy/freeradius-plugin/), so that plugin sessions are in `sessions` like proxied ones: live
changes reach them by CoA/Disconnect (with `[web] push_changes = true`) and `op25b sessions
who-had` finds them.

Why rlm_rest and not FreeRADIUS's `radacct` table: radacct has no Class column (the op25b:<class>
tag each session was given), its schema and queries are the carrier's to change, and reading it
would be a poll of another program's table; one more call in `accounting` gives us the same
record the proxy records, through the same spool, clamps and quarantine.

Each record goes through the same path as in `serve`: it is answered (204) only once it is
fsync'd in this process's spool (`<spool_dir>/web`), then drained into the database in batches
(services/recorder.py); with the database down the spool grows and nothing is lost. When the
spool cannot take it (full, an I/O error) the answer is 503 and FreeRADIUS's accounting goes on
without us (policy.d/op25b never fails the NAS's accounting because of op25b).

Body: form-encoded (what the shipped module sends) or JSON, every field a string as FreeRADIUS
prints it; an empty value is an absent attribute; unknown fields are refused (422).

    acct_status_type     Start | Stop | Interim-Update | Accounting-On | Accounting-Off (or the
                         number); other types are acknowledged and not recorded (204)
    acct_session_id, user_name, nas_identifier, nas_port_id
    nas_address          where the request came from (Packet-Src-IP-Address): the NAS's
                         [[clients]] entry is the one holding it, and CoA goes back there
    nas_ip_address, framed_ip_address, framed_ipv6_prefix, delegated_ipv6_prefix
    class                the Class values, as %{Class[*]} prints them (0x-hex, comma-separated)
    acct_session_time, acct_input_octets, acct_input_gigawords, acct_output_octets,
    acct_output_gigawords, acct_delay_time, event_timestamp (epoch seconds)
    acct_terminate_cause a name of RFC 2866 §5.10 (User-Request, ...) or its number

It writes session records, evidence for the abuse desk: the token must be an agent's or an admin's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from radius_op25b.core.accounting import STATUS_NAMES, TERMINATE_CAUSES, AccountingRecord, event_time_of, octets
from radius_op25b.core.clients import ClientTable
from radius_op25b.radius import (
    ACCT_STATUS_ACCOUNTING_OFF,
    ACCT_STATUS_ACCOUNTING_ON,
    ACCT_STATUS_INTERIM_UPDATE,
    ACCT_STATUS_START,
    ACCT_STATUS_STOP,
)
from radius_op25b.services.recorder import Recorder
from radius_op25b.services.spool import Spool, list_segments

log = logging.getLogger("op25b.accounting")

router = APIRouter(prefix="/api/v1")

SPOOL_WAIT = 5.0  # seconds the answer waits for the fsync before it says 503
WEB_SPOOL = "web"  # <spool_dir>/web: this process's spool, beside serve's (never a worker-N)
# The names FreeRADIUS prints for Acct-Status-Type (its dictionary.rfc2866; Alive is 3's alias).
STATUS_BY_NAME = {
    "start": ACCT_STATUS_START,
    "stop": ACCT_STATUS_STOP,
    "interim-update": ACCT_STATUS_INTERIM_UPDATE,
    "alive": ACCT_STATUS_INTERIM_UPDATE,
    "accounting-on": ACCT_STATUS_ACCOUNTING_ON,
    "accounting-off": ACCT_STATUS_ACCOUNTING_OFF,
}
CAUSE_NAMES = {name.lower(): name for name in TERMINATE_CAUSES.values()}
Text = Annotated[str | None, Field(max_length=253)]
Counter = Annotated[int | None, Field(ge=0, le=2**32 - 1)]  # a RADIUS integer (RFC 8044 §3.1)


class AccountingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    acct_status_type: Annotated[str, Field(min_length=1, max_length=32)]
    acct_session_id: Text = None
    user_name: Text = None
    nas_identifier: Text = None
    nas_port_id: Text = None
    nas_address: ipaddress.IPv4Address | ipaddress.IPv6Address
    nas_ip_address: ipaddress.IPv4Address | None = None
    framed_ip_address: ipaddress.IPv4Address | None = None
    framed_ipv6_prefix: ipaddress.IPv6Network | None = None
    delegated_ipv6_prefix: ipaddress.IPv6Network | None = None
    class_: Annotated[str | None, Field(alias="class", max_length=2048)] = None
    acct_session_time: Counter = None
    acct_input_octets: Counter = None
    acct_input_gigawords: Counter = None
    acct_output_octets: Counter = None
    acct_output_gigawords: Counter = None
    acct_delay_time: Counter = None
    event_timestamp: Counter = None
    acct_terminate_cause: Annotated[str | None, Field(max_length=32)] = None

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str) and not value.strip() and info.field_name != "acct_status_type":
            return None  # FreeRADIUS expands an absent attribute to ""
        if info.field_name.endswith("ipv6_prefix") and isinstance(value, str):
            return ipaddress.IPv6Network(value, strict=False)
        return value

    def status(self) -> str | None:
        """Our name for the status (core.accounting.STATUS_NAMES), None for a type we do not record."""
        text = self.acct_status_type.strip()
        number = int(text) if text.isdigit() else STATUS_BY_NAME.get(text.lower())
        return STATUS_NAMES.get(number) if number is not None else None

    def op25b_tag(self) -> str | None:
        """The op25b:<class> tag among the Class values (hex as FreeRADIUS prints octets, or text)."""
        for value in (self.class_ or "").split(","):
            value = value.strip()
            if value[:2].lower() == "0x":
                try:
                    value = bytes.fromhex(value[2:]).decode("ascii", "replace")
                except ValueError:
                    continue
            if value.startswith("op25b:"):
                return value[6:]
        return None

    def terminate_cause(self) -> str | None:
        cause = (self.acct_terminate_cause or "").strip()
        if not cause:
            return None
        if cause.isdigit():
            return TERMINATE_CAUSES.get(int(cause), cause)
        return CAUSE_NAMES.get(cause.lower(), cause)

    def record(self, nas_name: str, received: float) -> AccountingRecord | None:
        status = self.status()
        if status is None:
            return None
        return AccountingRecord(
            status=status,
            event_time=event_time_of(self.event_timestamp, self.acct_delay_time, received),
            nas_name=nas_name,
            nas_address=str(self.nas_address),
            acct_session_id=self.acct_session_id or "",
            username=self.user_name or "",
            nas_ip_address=str(self.nas_ip_address) if self.nas_ip_address is not None else None,
            nas_identifier=self.nas_identifier,
            nas_port_id=self.nas_port_id,
            framed_ip=str(self.framed_ip_address) if self.framed_ip_address is not None else None,
            framed_ipv6_prefix=str(self.framed_ipv6_prefix) if self.framed_ipv6_prefix is not None else None,
            delegated_ipv6_prefix=str(self.delegated_ipv6_prefix) if self.delegated_ipv6_prefix is not None else None,
            class_applied=self.op25b_tag(),
            session_time=self.acct_session_time,
            input_octets=octets(self.acct_input_octets, self.acct_input_gigawords),
            output_octets=octets(self.acct_output_octets, self.acct_output_gigawords),
            terminate_cause=self.terminate_cause(),
        )


class PluginRecorder:
    """This process's Recorder, on its own spool; started at the first record (or at start when
    the spool still holds records from before a restart), closed with the app."""

    def __init__(self, state: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.state, self.loop = state, loop
        self.recorder: Recorder | None = None
        self.clients = ClientTable(state.config.clients)

    @property
    def spool_dir(self) -> Path:
        return Path(self.state.config.spool_dir) / WEB_SPOOL

    def start(self) -> Recorder:
        if self.recorder is None:
            try:
                spool = Spool(self.spool_dir, self.state.config.spool_max_bytes)
            except OSError as exc:
                log.error("accounting spool %s: %s; accounting is not answered (503)", self.spool_dir, exc)
                raise HTTPException(
                    503, f"the accounting spool {self.spool_dir} cannot be opened: {exc.strerror or exc}"
                ) from None
            self.recorder = Recorder(self.state.engine, spool, self.loop, on_unrecorded=_refuse)
            self.recorder.start()
            log.info("recording plugin accounting through %s", self.spool_dir)
        return self.recorder

    def start_if_pending(self) -> None:
        if list_segments(self.spool_dir):
            self.start()

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None


def _refuse(waiting: list[asyncio.Future[None]]) -> None:
    """The recorder's on_unrecorded: the record is not in the spool, so the answer is 503."""
    future = waiting[0]
    if not future.done():
        future.set_exception(
            HTTPException(503, "the accounting spool cannot take the record (full or an I/O error); see the log")
        )


def start(app: FastAPI, loop: asyncio.AbstractEventLoop) -> None:
    plugin = PluginRecorder(app.state.op25b, loop)
    app.state.op25b_accounting = plugin
    plugin.start_if_pending()


def stop(app: FastAPI) -> None:
    plugin: PluginRecorder | None = getattr(app.state, "op25b_accounting", None)
    if plugin is not None:
        plugin.close()
        app.state.op25b_accounting = None


@router.post(
    "/accounting",
    status_code=204,
    responses={204: {"description": "recorded (durably spooled), or a type that is not recorded"}},
    summary="Record one Accounting-Request of a FreeRADIUS running the plugin",
)
async def accounting(request: Request) -> Response:
    from radius_op25b.web.decide import authenticate, form_or_json

    member = await authenticate(request)
    if not member.may("agent"):
        raise HTTPException(403, f"{member.name} is a {member.role}; recording accounting needs the agent role")
    body = await form_or_json(request, AccountingBody)
    plugin: PluginRecorder | None = getattr(request.app.state, "op25b_accounting", None)
    if plugin is None:
        raise HTTPException(503, "this op25b web records no accounting (its service is not started)")
    client = plugin.clients.lookup(str(body.nas_address))
    if client is None:
        raise HTTPException(422, f"nas_address: {body.nas_address} is in no [[clients]] entry (CoA could not reach it)")
    record = body.record(client.name, time.time())
    if record is None:
        return Response(status_code=204)
    waiting: list[asyncio.Future[None]] = []  # the job the recorder hands to _refuse when it cannot spool
    waiting.append(plugin.start().submit(record, waiting))
    try:
        await asyncio.wait_for(asyncio.shield(waiting[0]), SPOOL_WAIT)
    except TimeoutError:
        raise HTTPException(503, f"the accounting spool did not take the record within {SPOOL_WAIT:.0f} s") from None
    return Response(status_code=204)
