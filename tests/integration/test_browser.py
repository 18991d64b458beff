"""A real browser end to end: headless Chromium (DevTools protocol,
tests/e2e/cdp.py) opens the shipped event console (deploy/demo/) through
the shipped nginx site (tests/e2e/nginx.py) in front of gatewayd and
workerd, connects with a token from the URL, subscribes the way the AWX UI
does (jobs: [status_changed] plus job_events: [42], with the xrftoken its
csrftoken cookie calls for), and the test emits events with chanctl.

Shows: the page's request is exactly AWX's shape with the cookie's
xrftoken; the gateway accepted it (groups_current on the page); every
emitted event is on the page with its exact text, in order per group; an
event with markup is shown as text, not run; the page keeps working after
"Leave all" (no more events shown). A screenshot of the page is written to
the test's folder (console.png).
"""

import asyncio
import json
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import mint_token, run, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from cdp import Browser, Page  # noqa: E402
from nginx import Nginx  # noqa: E402

CSRF = "k3yFromDjango42"
GROUPS = {"jobs": ["status_changed"], "job_events": [42]}

STATUS_EVENTS = [
    json.dumps({"group_name": "jobs", "unified_job_id": 42, "status": "pending"}),
    json.dumps({"group_name": "jobs", "unified_job_id": 42, "status": "running"}),
]
JOB_EVENTS = [
    '{"counter": 1, "event": "playbook_on_start", "stdout": "PLAY [all] ****"}',
    '{"counter": 2, "event": "runner_on_ok", "stdout": "ok: [h\u00f4te-\u2603] <b>bold</b>"}',
    # Markup in an event must be shown as text: an injected element would
    # set window.pwned.
    '{"counter": 3, "stdout": "<img src=x onerror=\\"window.pwned=1\\">"}',
]

TEXTS = "Array.from(document.querySelectorAll('#log li.{kind} .text')).map(e => e.textContent)"


@pytest.fixture
def stack(cluster):
    """Bindings go as soon as the last member leaves (group_linger 0): the
    page's "leave all" is checked on the broker."""
    cluster.worker(ready=False)
    cluster.gw = cluster.gateway("--gateway.group_linger=0")
    return cluster


@pytest.fixture
def browser(tmp_path):
    b = Browser.launch(tmp_path / "chromium")
    yield b
    b.stop()


def test_event_console_in_chromium(stack, browser, tmp_path):
    ng = Nginx(tmp_path / "nginx", [stack.gw.port])
    try:
        run_console(stack, browser, ng, tmp_path)
    finally:
        ng.stop()


def run_console(stack, browser, ng, tmp_path):
    token = mint_token(7, "integration-test-secret-0123456789abcdef",
                       "--objects", json.dumps({"job_events": [42]}))
    page_url = ng.url(f"/wsgw-demo/?token={quote(token)}")

    async def wait_bound(group):
        def bound():
            return stack.broker.group_bindings(stack.vhost, group)
        await asyncio.to_thread(wait_until, bound, 10, f"a binding of {group}")

    async def main():
        page = await Page.open(browser)
        try:
            # The cookie a Django session would have set: the browser sends
            # it with the handshake, the page must echo it as xrftoken.
            await page.send("Network.setCookie", name="csrftoken", value=CSRF,
                            url=ng.url("/"))
            await page.navigate(page_url)
            assert await page.eval("document.title") == "wsgw event console"
            assert await page.eval("document.getElementById('xrf').textContent") == "yes"

            # What an operator does: Connect, type the groups, Subscribe.
            await page.eval("document.getElementById('connect').click()")
            await page.wait_for("document.getElementById('user').textContent === '7'",
                                what="the accept message on the page")
            assert await page.eval("document.getElementById('status').textContent") == "open"
            await page.eval("document.getElementById('groups').value = "
                            + json.dumps(json.dumps(GROUPS)))
            await page.eval("document.getElementById('subscribe').click()")
            current = await page.wait_for(
                "(t => t !== '-' && t)(document.getElementById('groups-current').textContent)",
                what="the subscription reply on the page")
            assert current == "job_events-42 jobs-status_changed"
            sent = await page.eval(TEXTS.format(kind="sent"))
            assert [json.loads(s) for s in sent] == [{"groups": GROUPS, "xrftoken": CSRF}]
            assert await page.eval(TEXTS.format(kind="error")) == []

            await wait_bound("jobs-status_changed")
            await wait_bound("job_events-42")
            for e in STATUS_EVENTS:
                await asyncio.to_thread(stack.emit, "jobs-status_changed", e)
            await asyncio.to_thread(stack.emit_stdin, "job_events-42", JOB_EVENTS)
            n = len(STATUS_EVENTS) + len(JOB_EVENTS)
            await page.wait_for(f"document.querySelectorAll('#log li.event').length >= {n}",
                                what=f"{n} events on the page")
            shown = await page.eval(TEXTS.format(kind="event"))
            assert len(shown) == n, shown
            assert [t for t in shown if t in STATUS_EVENTS] == STATUS_EVENTS
            assert [t for t in shown if t in JOB_EVENTS] == JOB_EVENTS
            assert await page.eval("document.getElementById('event-count').textContent") == str(n)
            assert await page.eval("window.pwned === undefined && "
                                   "document.querySelectorAll('#log img').length === 0")

            png = await page.screenshot(tmp_path / "console.png")
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000

            # Leave all: the reply empties the set and later events stay away.
            await page.eval("document.getElementById('unsubscribe').click()")
            await page.wait_for("document.getElementById('groups-current').textContent "
                                "=== '(none)'", what="the empty subscription")
            await asyncio.to_thread(
                wait_until, lambda: not stack.broker.group_bindings(stack.vhost), 10,
                "the gateway to unbind its groups")
            await asyncio.to_thread(stack.emit, "jobs-status_changed", '{"late": true}')
            await asyncio.sleep(0.5)
            assert len(await page.eval(TEXTS.format(kind="event"))) == n
            assert not any(c.startswith("exception") for c in page.console), page.console

            # Disconnect closes cleanly (nginx logs the upgrade when it ends).
            await page.eval("document.getElementById('disconnect').click()")
            await page.wait_for("document.getElementById('status').textContent === "
                                "'closed 1000'", what="a clean close")
        finally:
            await page.close()

    run(main(), timeout=60)
    # nginx served the page and proxied the websocket.
    assert '"GET /wsgw-demo/app.js HTTP/1.1" 200' in ng.access_log()
    wait_until(lambda: '"GET /websocket/?token=' in ng.access_log()
               and '" 101 ' in ng.access_log(), 5, "nginx to log the websocket (101)")
