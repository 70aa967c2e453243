"""`op25b web`: the FastAPI application. The API (web/api.py) and the pages (web/pages.py) both
call the support desk (services/desk.py) and the staff service; nothing here decides policy.

Errors: every refusal is `{"error": "..."}` with 401 (no or bad token), 403 (role), 404 (not
found), 409 (conflict), 422 (a malformed value or body), 429 (sign-in rate limit), 503 (the
database is down); a refused request changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from radius_op25b import __version__
from radius_op25b.core.config import Config
from radius_op25b.errors import Conflict, InvalidInput, NotFound, Op25bError, StoreUnavailable, UsageError
from radius_op25b.services.desk import Desk
from radius_op25b.services.staff import Member, StaffService
from radius_op25b.web.auth import Sessions, SignInLimit

STATUS = {NotFound: 404, Conflict: 409, InvalidInput: 422, UsageError: 422, StoreUnavailable: 503}


@dataclass
class WebState:
    """What every request handler shares."""

    config: Config
    engine: Engine
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sessions: Sessions = field(default_factory=Sessions)
    limit: SignInLimit = field(default_factory=SignInLimit)

    def desk(self, member: Member, via: str, *, at_next_login: bool = False) -> Desk:
        # The schema was checked when `op25b web` started (cmd_web), not on every request.
        return Desk(
            self.config,
            self.engine,
            actor=member.name,
            clock=self.clock,
            at_next_login=at_next_login,
            via=via,
            check_schema=False,
        )

    def staff(self, actor: str = "web") -> StaffService:
        return StaffService(self.engine, actor=actor, clock=self.clock)


def status_of(exc: Op25bError) -> int:
    return next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)


def create_app(config: Config, engine: Engine, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    from radius_op25b.web import accounting, api, decide, pages

    app = FastAPI(
        title="radius-op25b support desk API",
        version=__version__,
        description="Subscribers, exemptions, sessions and the audit log of an OP25B RADIUS proxy. "
        "Authenticate with `Authorization: Bearer TOKEN` (`op25b staff token NAME`).",
        docs_url=None,
        redoc_url=None,
        lifespan=decide.lifespan,  # the held policy set for /api/v1/decide (as serve holds it)
    )
    state = WebState(config, engine, clock or (lambda: datetime.now(UTC)))
    app.state.op25b = state

    @app.exception_handler(Op25bError)
    async def op25b_error(request: Request, exc: Op25bError) -> Any:
        if not request.url.path.startswith("/api/"):
            return pages.error_page(request, status_of(exc), str(exc))
        return JSONResponse({"error": str(exc)}, status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Any:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:5])
        if not request.url.path.startswith("/api/"):
            return pages.error_page(request, 422, problems)
        return JSONResponse({"error": problems or "malformed request"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        headers = getattr(exc, "headers", None)
        if not request.url.path.startswith("/api/"):
            return pages.error_page(request, exc.status_code, str(exc.detail), headers=headers)
        # A body that cannot be parsed at all (not UTF-8, not JSON) is a malformed body too: 422.
        status = 422 if exc.status_code == 400 else exc.status_code
        return JSONResponse({"error": str(exc.detail)}, status_code=status, headers=headers)

    app.add_middleware(decide.FastDecide, owner=app)  # rlm_rest's hot request, without the framework
    app.include_router(api.router)
    app.include_router(decide.router)
    app.include_router(accounting.router)
    app.include_router(pages.router)
    return app
