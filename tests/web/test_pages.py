"""The support desk's pages in-process (TestClient), on SQLite and PostgreSQL: signing in, the
cookie's flags, the rate limit, CSRF, roles, the languages, the warning before a Disconnect, the
SSO header, and that no secret reaches a page."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from radius_op25b.web.pages import SECURITY_HEADERS
from tests.web.conftest import ALICE, BOB, PASSWORD, SSO, Desks, form_token

GENERIC = "wrong username or password"


def cookie_header(response, name: str) -> str:  # type: ignore[no-untyped-def]
    [found] = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    return found


def attempt(client, name: str, password: str):  # type: ignore[no-untyped-def]
    token = form_token(client.get("/sign-in").text)
    return client.post("/sign-in", data={"username": name, "password": password, "csrf": token})


# --- signing in ----------------------------------------------------------------------------------


def test_sign_in_page_has_labelled_fields_and_home_redirects(desks: Desks) -> None:
    client = desks.client()
    home = client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/sign-in"
    page = client.get("/sign-in")
    assert page.status_code == 200
    for label, field in (("Username", "username"), ("Password", "password")):
        assert f'<label for="{field}">{label}</label>' in page.text
        assert f'id="{field}"' in page.text
    assert '<button type="submit">Sign in</button>' in page.text
    assert 'type="password"' in page.text


def test_sign_in_sets_a_strict_http_only_session_cookie(desks: Desks) -> None:
    desks.staff("ayumi")
    client = desks.client()
    done = attempt(client, "ayumi", PASSWORD)
    assert done.status_code == 303 and done.headers["location"] == "/search"
    cookie = cookie_header(done, "op25b_session")
    flags = [f.strip().lower() for f in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain http: a Secure cookie would never come back
    assert client.get("/").headers["location"] == "/search"
    page = client.get("/search")
    assert page.status_code == 200 and "Signed in as ayumi" in page.text
    assert '<label for="q">Search</label>' in page.text


def test_the_cookie_is_secure_over_https(desks: Desks) -> None:
    desks.staff("ayumi")
    client = desks.client(https=True)
    done = attempt(client, "ayumi", PASSWORD)
    assert done.status_code == 303
    flags = [f.strip().lower() for f in cookie_header(done, "op25b_session").split(";")]
    assert {"secure", "httponly", "samesite=strict"} <= set(flags)


def test_a_failed_sign_in_says_the_same_whatever_was_wrong(desks: Desks) -> None:
    desks.staff("ayumi")
    desks.staff("gone")
    desks.state.staff("test").disable("gone")
    desks.staff("tokenonly", password=None)
    pages = []
    for name, password in (
        ("ayumi", "not the password"),
        ("nobody", PASSWORD),
        ("gone", PASSWORD),
        ("tokenonly", PASSWORD),
        ("", ""),
    ):
        client = desks.client(f"198.51.100.{len(pages) + 1}")
        answer = attempt(client, name, password)
        assert answer.status_code == 401, (name, answer.text)
        assert GENERIC in answer.text
        assert "op25b_session" not in answer.headers.get("set-cookie", "")
        pages.append(answer.text.replace(f'value="{name}"', 'value=""'))
    assert len({re.sub(r'name="csrf" value="[^"]+"', "", p) for p in pages}) == 1  # nothing tells them apart


def test_sign_in_is_rate_limited_per_user(desks: Desks) -> None:
    desks.staff("ayumi")
    desks.staff("kenji")
    for i in range(5):
        assert attempt(desks.client(f"198.51.100.{i + 1}"), "ayumi", "wrong password!").status_code == 401
    elsewhere = desks.client("198.51.100.77")
    limited = attempt(elsewhere, "ayumi", PASSWORD)  # the right password, from a fresh address
    assert limited.status_code == 429
    assert "Too many failed sign-ins. Try again in 5 minutes." in limited.text
    assert int(limited.headers["retry-after"]) > 290
    assert "op25b_session" not in limited.headers.get("set-cookie", "")
    assert attempt(elsewhere, "kenji", PASSWORD).status_code == 303  # another user is not held up


def test_sign_in_is_rate_limited_per_address(desks: Desks) -> None:
    desks.staff("ayumi")
    there = desks.client("198.51.100.9")
    for i in range(5):
        assert attempt(there, f"guess{i}", "wrong password!").status_code == 401
    assert attempt(there, "ayumi", PASSWORD).status_code == 429
    assert attempt(desks.client("198.51.100.10"), "ayumi", PASSWORD).status_code == 303


def test_sign_in_without_its_form_token_is_refused(desks: Desks) -> None:
    desks.staff("ayumi")
    client = desks.client()
    refused = client.post("/sign-in", data={"username": "ayumi", "password": PASSWORD})
    assert refused.status_code == 403 and "missing or wrong form token" in refused.text
    client.get("/sign-in")
    wrong = client.post("/sign-in", data={"username": "ayumi", "password": PASSWORD, "csrf": "x" * 43})
    assert wrong.status_code == 403
    assert "op25b_session" not in wrong.headers.get("set-cookie", "")


def test_sign_out_ends_the_session(desks: Desks) -> None:
    desks.staff("ayumi")
    client = desks.client()
    token = desks.sign_in(client, "ayumi")
    assert client.post("/sign-out", data={}).status_code == 403  # no token: still signed in
    assert client.get("/search").status_code == 200
    out = client.post("/sign-out", data={"csrf": token})
    assert out.status_code == 303 and out.headers["location"] == "/sign-in"
    assert client.get("/search").headers["location"] == "/sign-in"


def test_pages_need_a_session_and_carry_the_security_headers(desks: Desks) -> None:
    desks.staff("ayumi")
    desks.subscriber(ALICE)
    anonymous = desks.client()
    for path in ("/search?q=a", f"/subscribers/{ALICE}", "/exemptions", "/audit"):
        answer = anonymous.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/sign-in", path
    client = desks.client()
    desks.sign_in(client, "ayumi")
    for path in ("/sign-in", "/search?q=a", f"/subscribers/{ALICE}", "/exemptions", "/audit", "/subscribers/nobody@x"):
        answer = desks.client().get(path) if path == "/sign-in" else client.get(path)
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value, (path, name)
        assert answer.headers["cache-control"] == "no-store", path
    css = client.get("/static/op25b.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


# --- reading -------------------------------------------------------------------------------------


def test_search_by_name_prefix_and_by_address(desks: Desks) -> None:
    desks.staff("kenji", "viewer")
    desks.subscriber(ALICE)
    desks.subscriber(BOB, static=["203.0.113.25"])
    desks.open_session(ALICE, ip="100.64.0.9")
    client = desks.client()
    desks.sign_in(client, "kenji")
    names = client.get("/search", params={"q": "ali"})
    assert names.status_code == 200
    assert f'<a href="/subscribers/alice%40isp.example">{ALICE}</a>' in names.text and BOB not in names.text
    none = client.get("/search", params={"q": "zed"})
    assert "No subscriber starts with zed." in none.text
    owner = client.get("/search", params={"q": "203.0.113.25"})
    assert "Static owner" in owner.text and f">{BOB}</a>" in owner.text
    holder = client.get("/search", params={"q": "100.64.0.9"})
    assert holder.text.count(f">{ALICE}</a>") >= 2  # who has it now, and its open session


def test_subscriber_page_says_the_decision_and_its_reason(desks: Desks) -> None:
    desks.staff("kenji", "viewer")
    desks.subscriber(ALICE, note="called 2026-11-30")
    desks.desk().exempt(ALICE, reason="runs own MTA", duration="30d")
    client = desks.client()
    desks.sign_in(client, "kenji")
    page = client.get(f"/subscribers/{ALICE}")
    assert page.status_code == 200
    assert 'Decision: <span class="class">none</span>' in page.text
    assert "No port 25 filter: the customer can send mail directly." in page.text
    assert "by test: runs own MTA" in page.text  # the reason, in the desk's words
    assert "called 2026-11-30" in page.text and "Exemption history" in page.text
    missing = client.get("/subscribers/nobody@isp.example")
    assert missing.status_code == 404 and "nobody@isp.example" in missing.text


def test_exemptions_expiring_and_the_audit_log(desks: Desks) -> None:
    desks.staff("ayumi")
    desks.subscriber(ALICE)
    desks.subscriber(BOB)
    client = desks.client()
    token = desks.sign_in(client, "ayumi")
    client.post(f"/subscribers/{ALICE}/exempt", data={"csrf": token, "reason": "trial", "duration": "2d"})
    client.post(f"/subscribers/{BOB}/exempt", data={"csrf": token, "reason": "own MTA", "duration": "20d"})
    week = client.get("/exemptions").text
    assert ALICE in week and BOB not in week
    assert BOB in client.get("/exemptions", params={"within": "30d"}).text
    assert ALICE not in client.get("/exemptions", params={"within": "1d"}).text
    audit = client.get("/audit", params={"user": ALICE, "action": "subscriber.exempt"})
    assert audit.status_code == 200
    row = re.search(r"<td>ayumi</td>\s*<td>web</td>\s*<td>subscriber.exempt</td>", audit.text)
    assert row, audit.text
    assert "trial" in audit.text and BOB not in audit.text
    assert "→" in audit.text
    bad = client.get("/audit", params={"since": "yesterday-ish"})
    assert bad.status_code == 422


# --- changing ------------------------------------------------------------------------------------


def test_an_agent_exempts_and_ends_it_from_the_page(desks: Desks) -> None:
    desks.staff("ayumi")
    desks.subscriber(ALICE)
    client = desks.client()
    desks.sign_in(client, "ayumi")
    page = client.get(f"/subscribers/{ALICE}").text
    for field, label in (("reason", "Reason"), ("duration", "Duration"), ("until", "Until")):
        assert f'<label for="{field}">{label}</label>' in page
    token = form_token(page)
    done = client.post(f"/subscribers/{ALICE}/exempt", data={"csrf": token, "reason": "own MTA", "duration": "30d"})
    assert done.status_code == 200, done.text
    assert f"{ALICE}: exempt until" in done.text and "No live sessions to change." in done.text
    assert 'Decision: <span class="class">none</span>' in done.text
    again = client.get(f"/subscribers/{ALICE}").text
    assert "End exemption" in again
    conflict = client.post(f"/subscribers/{ALICE}/exempt", data={"csrf": token, "reason": "twice", "duration": "30d"})
    assert conflict.status_code == 409 and "already exempt" in conflict.text and "Nothing was changed." in conflict.text
    ended = client.post(f"/subscribers/{ALICE}/unexempt", data={"csrf": token, "reason": "customer left"})
    assert ended.status_code == 200 and 'Decision: <span class="class">full</span>' in ended.text
    [entry] = desks.desk().audit(action="subscriber.exempt")["entries"]
    assert (entry["actor"], entry["via"], entry["reason"]) == ("ayumi", "web", "own MTA")


def test_a_bad_form_is_a_readable_error_and_changes_nothing(desks: Desks) -> None:
    desks.staff("ayumi")
    desks.subscriber(ALICE)
    client = desks.client()
    token = desks.sign_in(client, "ayumi")
    before = desks.snapshot()
    cases = [
        ({"reason": "x"}, 422, "Give either a Duration or an Until date."),
        ({"reason": "x", "duration": "30d", "until": "2030-01-01"}, 422, "Give either a Duration or an Until date."),
        ({"reason": "x", "duration": "soon"}, 422, "soon"),
        ({"reason": "", "duration": "30d"}, 422, "reason"),
        ({"reason": "x", "until": "2001-01-01"}, 422, "is not in the future"),
    ]
    for data, status, words in cases:
        answer = client.post(f"/subscribers/{ALICE}/exempt", data={"csrf": token, **data})
        assert answer.status_code == status, (data, answer.text)
        assert words in answer.text and "Nothing was changed." in answer.text
    unknown = client.post("/subscribers/nobody@isp.example/exempt", data={"csrf": token, "reason": "x", "duration": "1d"})
    assert unknown.status_code == 404
    assert desks.snapshot() == before


def test_a_post_without_the_right_form_token_is_403_and_changes_nothing(desks: Desks) -> None:
    desks.staff("ayumi")
    desks.subscriber(ALICE)
    desks.desk().exempt(ALICE, reason="earlier", duration="3d")
    client = desks.client()
    token = desks.sign_in(client, "ayumi")
    other = desks.client("192.0.2.98")
    other_token = desks.sign_in(other, "ayumi")  # a real token, of another session
    before = desks.snapshot()
    for csrf in (None, "", "wrong", other_token, token + "x"):
        data = {"reason": "sneaky", "duration": "30d", "extend": "1"}
        if csrf is not None:
            data["csrf"] = csrf
        for path in (f"/subscribers/{ALICE}/exempt", f"/subscribers/{ALICE}/unexempt"):
            answer = client.post(path, data=data)
            assert answer.status_code == 403, (path, csrf)
            assert "missing or wrong form token" in answer.text
    assert desks.snapshot() == before
    assert client.post(f"/subscribers/{ALICE}/unexempt", data={"csrf": token, "reason": "ok"}).status_code == 200


def test_a_viewer_sees_no_forms_and_may_not_post(desks: Desks) -> None:
    desks.staff("kenji", "viewer")
    desks.subscriber(ALICE)
    desks.desk().exempt(ALICE, reason="earlier", duration="3d")
    client = desks.client()
    token = desks.sign_in(client, "kenji")
    page = client.get(f"/subscribers/{ALICE}").text
    assert '/exempt"' not in page and '/unexempt"' not in page and 'name="reason"' not in page
    assert "changes need the agent role" in page
    before = desks.snapshot()
    for path in (f"/subscribers/{ALICE}/exempt", f"/subscribers/{ALICE}/unexempt"):
        answer = client.post(path, data={"csrf": token, "reason": "x", "duration": "1d", "extend": "1"})
        assert answer.status_code == 403 and "kenji is a viewer; this needs the agent role" in answer.text
    assert desks.snapshot() == before


def test_the_page_warns_before_an_exemption_disconnects_a_live_session(desks: Desks) -> None:
    desks.staff("ayumi")
    desks.subscriber(ALICE)
    desks.subscriber(BOB)
    desks.open_session(ALICE, nas="bng1", address="192.0.2.10")  # generic: no CoA can take a filter away
    desks.open_session(BOB, nas="bng2", address="192.0.2.20", ip="100.64.0.10")  # nokia-sr: a CoA can
    client = desks.client()
    token = desks.sign_in(client, "ayumi")
    alice = html.unescape(client.get(f"/subscribers/{ALICE}").text)
    warning = alice.index("This customer's session on NAS bng1 will be DISCONNECTED and reconnect")
    assert warning < alice.index('<button type="submit">Exempt</button>')  # read before the button
    assert "profile generic has no CoA remove" in alice
    assert '<label for="at_next_login" class="check">Apply at next login instead</label>' in alice
    assert "sess-alice" in alice and "never pushed" in alice
    bob = client.get(f"/subscribers/{BOB}").text
    assert "DISCONNECTED" not in bob

    held = client.post(
        f"/subscribers/{ALICE}/exempt", data={"csrf": token, "reason": "own MTA", "duration": "7d", "at_next_login": "1"}
    )
    assert held.status_code == 200
    assert "1 live session on bng1 keeps its current filter until the next login" in held.text
    client.post(f"/subscribers/{ALICE}/unexempt", data={"csrf": token, "reason": "test again", "at_next_login": "1"})
    now = client.post(f"/subscribers/{ALICE}/exempt", data={"csrf": token, "reason": "own MTA", "duration": "7d"})
    assert "1 live session on bng1 will be DISCONNECTED (profile generic has no CoA remove)" in now.text
    coa = client.post(f"/subscribers/{BOB}/exempt", data={"csrf": token, "reason": "own MTA", "duration": "7d"})
    assert "1 live session on bng2 gets a CoA" in coa.text and "DISCONNECTED" not in coa.text


# --- languages -----------------------------------------------------------------------------------


def test_japanese_from_accept_language_and_the_switch(desks: Desks) -> None:
    desks.staff("ayumi")
    desks.subscriber(ALICE)
    ja = desks.client(**{"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.5"})
    page = ja.get("/sign-in").text
    assert '<html lang="ja">' in page
    for label in ("ユーザー名", "パスワード", "サインイン"):
        assert label in page
    token = form_token(page)
    ja.post("/sign-in", data={"username": "ayumi", "password": PASSWORD, "csrf": token})
    sub = ja.get(f"/subscribers/{ALICE}").text
    for label in ("理由", "期間", "除外する", "検索"):
        assert label in sub
    english = ja.get(f"/subscribers/{ALICE}", params={"lang": "en"})
    assert '<html lang="en">' in english.text and ">Exempt</button>" in english.text
    assert "lang=en" in english.headers["set-cookie"]
    assert '<html lang="en">' in ja.get("/search").text  # the switch sticks (cookie) over Accept-Language
    assert '<html lang="ja">' in ja.get("/search", params={"lang": "ja"}).text
    prefers_en = desks.client(**{"Accept-Language": "en-US,en;q=0.9,ja;q=0.8"})
    assert '<html lang="en">' in prefers_en.get("/sign-in").text
    failed = attempt(desks.client(**{"Accept-Language": "ja"}), "ayumi", "wrong password!")
    assert "ユーザー名またはパスワードが違います" in failed.text


# --- secrets and the SSO header ------------------------------------------------------------------


def test_no_password_token_or_session_id_in_any_page(desks: Desks) -> None:
    desks.staff("ayumi")
    desks.subscriber(ALICE)
    api_token, _ = desks.state.staff("test").token("ayumi")
    client = desks.client()
    csrf = desks.sign_in(client, "ayumi")
    sid = client.cookies.get("op25b_session")
    assert sid
    client.post(f"/subscribers/{ALICE}/exempt", data={"csrf": csrf, "reason": "own MTA", "duration": "30d"})
    pages = [client.get(p).text for p in ("/search?q=a", f"/subscribers/{ALICE}", "/exemptions?within=all", "/audit", "/nope")]
    pages.append(attempt(desks.client("203.0.113.200"), "ayumi", "wrong password!").text)
    for text in pages:
        assert PASSWORD not in text and "wrong password!" not in text
        assert api_token not in text and api_token[12:] not in text
        assert sid not in text
        assert "$argon2" not in text


def test_the_sso_header_is_believed_only_from_a_trusted_proxy(make_desks: Callable[..., Desks]) -> None:
    desks = make_desks(SSO)
    desks.staff("ayumi", password=None)
    desks.staff("gone")
    desks.state.staff("test").disable("gone")
    desks.subscriber(ALICE)
    proxy = desks.client("10.0.0.5", **{"X-Remote-User": "ayumi"})
    page = proxy.get("/search")
    assert page.status_code == 200 and "Signed in as ayumi" in page.text
    flags = [f.strip().lower() for f in cookie_header(page, "op25b_session").split(";")]
    assert "httponly" in flags and "samesite=strict" in flags
    token = form_token(page.text)
    done = proxy.post(f"/subscribers/{ALICE}/exempt", data={"csrf": token, "reason": "SSO", "duration": "1d"})
    assert done.status_code == 200
    [entry] = desks.desk().audit(action="subscriber.exempt")["entries"]
    assert (entry["actor"], entry["via"]) == ("ayumi", "web")

    for address in ("10.0.0.6", "192.0.2.99", "127.0.0.1"):
        spoofed = desks.client(address, **{"X-Remote-User": "ayumi", "X-Forwarded-For": "10.0.0.5"})
        answer = spoofed.get("/search")
        assert answer.status_code == 303 and answer.headers["location"] == "/sign-in", address
    unknown = desks.client("10.0.0.5", **{"X-Remote-User": "mallory"}).get("/search")
    assert unknown.status_code == 403 and "mallory is not an enabled staff member" in unknown.text
    assert desks.client("10.0.0.5", **{"X-Remote-User": "gone"}).get("/search").status_code == 403


def test_without_a_configured_header_it_is_ignored_from_anywhere(desks: Desks) -> None:
    desks.staff("ayumi")
    answer = desks.client("10.0.0.5", **{"X-Remote-User": "ayumi"}).get("/search")
    assert answer.status_code == 303 and answer.headers["location"] == "/sign-in"


def test_a_disabled_member_is_signed_out_at_once(desks: Desks) -> None:
    desks.staff("ayumi")
    client = desks.client()
    desks.sign_in(client, "ayumi")
    assert client.get("/search").status_code == 200
    desks.state.staff("test").disable("ayumi")
    assert client.get("/search").headers["location"] == "/sign-in"
