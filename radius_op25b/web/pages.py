"""The support desk's pages (server-rendered, no JavaScript needed). Placeholder: being built."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

router = APIRouter()


def error_page(request: Request, status: int, message: str, headers: Any = None) -> HTMLResponse:
    from html import escape

    return HTMLResponse(f"<!doctype html><title>{status}</title><p>{escape(message)}</p>", status_code=status, headers=headers)
