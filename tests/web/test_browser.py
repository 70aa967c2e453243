"""The support desk in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against a real `op25b web` process: sign in, search, exempt from the page, see the result; a form
posted without its CSRF token is refused. Screenshots of the subscriber page: docs/screenshots/
(OP25B_SCREENSHOTS=1 .venv/bin/pytest tests/web/test_browser.py writes them)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.web.conftest import ALICE, PASSWORD, WebProcess

# The screenshots are taken on every run; they replace docs/screenshots/ only when asked
# (OP25B_SCREENSHOTS=1), so a test run leaves the checkout as it was.
REPO_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCREENSHOTS = REPO_SCREENSHOTS if os.environ.get("OP25B_SCREENSHOTS") == "1" else Path(tempfile.mkdtemp(prefix="op25b-shots-"))
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def new_page(browser: Browser, web: WebProcess, locale: str = "en-US") -> Page:
    context = browser.new_context(base_url=web.url, viewport={"width": 1280, "height": 900}, locale=locale)
    return context.new_page()


def sign_in(
    page: Page, name: str = "ayumi", *, username: str = "Username", password: str = "Password", button: str = "Sign in"
) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/sign-in$"))
    page.get_by_label(username).fill(name)
    page.get_by_label(password).fill(PASSWORD)
    page.get_by_role("button", name=button).click()
    expect(page).to_have_url(re.compile(r"/search$"))


def test_sign_in_search_exempt_and_see_the_result(browser: Browser, web_process: WebProcess) -> None:
    page = new_page(browser, web_process)
    page.goto("/sign-in")
    page.get_by_label("Username").fill("ayumi")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("wrong username or password")

    sign_in(page)
    page.get_by_label("Search").fill("alice")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=ALICE).click()
    expect(page).to_have_url(re.compile(r"/subscribers/alice%40isp\.example$"))
    expect(page.locator(".decision .class")).to_have_text("full")
    expect(page.get_by_text("This customer's session on NAS bng1 will be DISCONNECTED and reconnect")).to_be_visible()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "subscriber.png"), full_page=True)

    page.get_by_label("Reason").fill("runs own MTA (ticket 4711)")
    page.get_by_label("Duration").fill("30d")
    page.get_by_role("button", name="Exempt").click()
    expect(page.get_by_role("status")).to_contain_text(f"{ALICE}: exempt until")
    expect(page.get_by_text("1 live session on bng1 will be DISCONNECTED")).to_be_visible()
    expect(page.locator(".decision .class")).to_have_text("none")
    expect(page.locator(".decision .reason")).to_contain_text("by ayumi: runs own MTA (ticket 4711)")

    page.get_by_role("link", name=f"Back to {ALICE}").click()
    expect(page.locator(".decision .class")).to_have_text("none")
    expect(page.get_by_role("button", name="End exemption")).to_be_visible()
    audit = web_process.op25b("audit", "--user", ALICE, "--json")
    assert '"actor": "ayumi"' in audit and '"via": "web"' in audit


def test_a_form_without_its_csrf_token_is_refused(browser: Browser, web_process: WebProcess) -> None:
    page = new_page(browser, web_process)
    sign_in(page)
    page.goto(f"/subscribers/{ALICE}")
    page.get_by_label("Reason").fill("sneaky")
    page.get_by_label("Duration").fill("30d")
    page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Exempt").click()
    assert posted.value.status == 403
    expect(page.get_by_role("alert")).to_have_text("missing or wrong form token")
    expect(page.get_by_text("Nothing was changed.")).to_be_visible()

    forged = page.request.post(f"/subscribers/{ALICE}/exempt", form={"reason": "forged", "duration": "30d"})
    assert forged.status == 403
    page.goto(f"/subscribers/{ALICE}")
    expect(page.locator(".decision .class")).to_have_text("full")
    assert "sneaky" not in web_process.op25b("audit", "--json") and "forged" not in web_process.op25b("audit", "--json")


def test_a_viewer_sees_no_forms(browser: Browser, web_process: WebProcess) -> None:
    page = new_page(browser, web_process)
    sign_in(page, "kenji")
    page.goto(f"/subscribers/{ALICE}")
    expect(page.get_by_text("changes need the agent role")).to_be_visible()
    expect(page.get_by_role("button", name="Exempt")).to_have_count(0)
    expect(page.get_by_label("Reason")).to_have_count(0)


def test_the_subscriber_page_in_japanese(browser: Browser, web_process: WebProcess) -> None:
    page = new_page(browser, web_process, locale="ja-JP")
    sign_in(page, username="ユーザー名", password="パスワード", button="サインイン")
    page.get_by_label("検索").first.fill("alice")
    page.get_by_role("button", name="検索").click()
    page.get_by_role("link", name=ALICE).click()
    expect(page.get_by_label("理由")).to_be_visible()
    expect(page.get_by_label("期間", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="除外する")).to_be_visible()
    expect(page.get_by_text("切断され、再接続されます")).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "subscriber-ja.png"), full_page=True)
    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("button", name="Exempt")).to_be_visible()
