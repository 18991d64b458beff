"""A real browser end to end: headless Chromium (DevTools protocol,
tests/e2e/cdp.py) opens the shipped event console (deploy/demo/) through
the shipped nginx site (tests/e2e/nginx.py) in front of gatewayd and
workerd, connects with a token from the URL and subscribes the way the AWX
UI does (jobs: [status_changed] plus job_events: [42], with the xrftoken its
csrftoken cookie calls for) through the JS SDK (the console imports
wsgw.js, served beside it), and the test emits events with chanctl.

Shows: the request on the wire (read by DevTools) is exactly AWX's shape
with the cookie's xrftoken; the SDK is served by nginx from the tree; the gateway accepted it (groups_current on the page); every
emitted event is on the page with its exact text, in order per group; an
event with markup is shown as text, not run; the page keeps working after
"Leave all" (no more events shown). A screenshot of the page is written to
the test's folder (console.png).

The console stays on its own origin: its CSP (connect-src 'self') lets
Chromium open the same-origin ws:// and blocks a websocket to another origin
(a violation is reported and nothing reaches the other server); a ?ws=
parameter no longer points it elsewhere; a token in the URL never connects
by itself, even with connect=1, and leaves the address bar; connect=1
without one (the cookie's token) does.
Against a gateway with its history off (no wsgw.2) the console falls back
to the old protocol. Through the JS SDK the console rides out a gateway restart behind nginx:
it reconnects and resubscribes with its positions, every event shown once,
in order.
Also (issue 12, item 5): a page of another origin that opens the websocket
with the user's token cookie is refused, while the site's own page joins.
"""

import asyncio
import json
import signal
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import HISTORY_OFF, mint_token, run, wait_until

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

            # What an operator does: type the groups, Connect (which
            # subscribes to them).
            await page.eval("document.getElementById('groups').value = "
                            + json.dumps(json.dumps(GROUPS)))
            await page.eval("document.getElementById('connect').click()")
            current = await page.wait_for(
                "(t => t !== '-' && t)(document.getElementById('groups-current').textContent)",
                what="the subscription reply on the page")
            assert current == "job_events-42 jobs-status_changed"
            assert await page.eval("document.getElementById('user').textContent") == "7"
            assert await page.eval("document.getElementById('status').textContent") == "open"
            assert await page.eval(TEXTS.format(kind="error")) == []
            # What the SDK sent, as the browser saw it leave: AWX's shape,
            # with the cookie's xrftoken (no positions yet: nothing seen).
            assert [json.loads(f) for f in sent_frames(page)] == \
                [{"groups": GROUPS, "xrftoken": CSRF}]

            # No binding to wait for: the gateway reads every event from the
            # history, and a membership counts from the reply on.
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
    assert '"GET /wsgw-demo/wsgw.js HTTP/1.1" 200' in ng.access_log()
    wait_until(lambda: '"GET /websocket/ HTTP/1.1" 101 ' in ng.access_log(), 5,
               "nginx to log the websocket (101)")


def sent_frames(page):
    """Text frames the page's websockets sent, from DevTools' events."""
    return [p["response"]["payloadData"] for m, p in page.events
            if m == "Network.webSocketFrameSent" and p["response"].get("opcode") == 1]


class Listener:
    """A TCP port that counts the connections made to it (another origin a
    page might try to reach)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def test_console_stays_on_its_origin(stack, browser, tmp_path):
    ng = Nginx(tmp_path / "nginx", [stack.gw.port])
    other = Listener()
    token = mint_token(7, "integration-test-secret-0123456789abcdef")
    elsewhere = f"ws://127.0.0.1:{other.port}/websocket/"

    async def main():
        page = await Page.open(browser)
        try:
            await page.send("Network.setCookie", name="csrftoken", value=CSRF,
                            url=ng.url("/"))
            # The old attack link: another server, a token, connect=1.
            await page.navigate(ng.url(f"/wsgw-demo/?ws={quote(elsewhere)}&connect=1"
                                       f"&token={quote(token)}"))
            await asyncio.sleep(1.0)
            assert await page.eval("document.getElementById('status').textContent") \
                == "disconnected"
            assert await page.eval("document.getElementById('ws-url').textContent") \
                == ng.url("/websocket/", "ws")
            assert await page.eval("document.getElementById('token').value") == token
            # The token left the address bar (and the history entry).
            assert "token=" not in await page.eval("window.location.href")
            assert other.accepted == 0

            # The CSP: a websocket to another origin is refused by the
            # browser itself, with a violation report; same-origin is allowed.
            result = await page.eval(f"""new Promise(done => {{
                const seen = [];
                document.addEventListener('securitypolicyviolation',
                    e => seen.push(e.violatedDirective + ' ' + e.blockedURI));
                let ws;
                try {{ ws = new WebSocket({json.dumps(elsewhere)}); }}
                catch (e) {{ return setTimeout(() => done({{thrown: e.name, seen}}), 300); }}
                ws.onerror = () => setTimeout(() => done({{error: true, seen}}), 300);
                ws.onopen = () => done({{opened: true, seen}});
            }})""")
            assert not result.get("opened"), result
            assert any(v.startswith("connect-src") for v in result["seen"]), result
            await asyncio.sleep(0.3)
            assert other.accepted == 0

            # Pressing Connect: the page's own origin, accepted.
            await page.eval("document.getElementById('connect').click()")
            await page.wait_for("document.getElementById('user').textContent === '7'",
                                what="the accept message on the page")
            await page.eval("document.getElementById('disconnect').click()")
            await page.wait_for("document.getElementById('status').textContent === "
                                "'closed 1000'", what="a clean close")

            # connect=1 with the site's own cookie (no token in the URL)
            # still connects by itself.
            await page.send("Network.setCookie", name="token", value=token, url=ng.url("/"))
            await page.navigate(ng.url("/wsgw-demo/?connect=1&groups="
                                       + quote(json.dumps({"jobs": ["status_changed"]}))))
            await page.wait_for("document.getElementById('user').textContent === '7'",
                                what="the cookie's session accepted")
            assert other.accepted == 0
        finally:
            await page.close()

    try:
        run(main(), timeout=60)
    finally:
        other.close()
        ng.stop()


# ---- issue 12, item 5: cross-site websocket hijacking --------------------------

# Opens a websocket from the page; resolves with what happened: the greeting
# and the reply to one subscription, or the close code. The reply (if any)
# is to {"groups": {"job_events": [42]}} with xrftoken XRF (null: none).
OPEN_WS = """new Promise(resolve => {
  const seen = [];
  const ws = new WebSocket(%s);
  ws.onmessage = e => {
    seen.push(e.data);
    if (seen.length === 1)
      ws.send(JSON.stringify({groups: {job_events: [42]}, xrftoken: %s}));
    else { resolve({opened: true, seen}); ws.close(); }
  };
  ws.onclose = e => resolve({opened: seen.length > 0, code: e.code, seen});
})"""


class OtherSite:
    """A page of another origin (another port of the same host: the browser
    treats it as the same site, so it sends the host's cookies with the
    page's requests, as it would for a sibling subdomain's page), with no
    CSP of its own: the attacker's."""

    def __init__(self, root):
        import functools
        import http.server
        import threading
        root.mkdir(parents=True, exist_ok=True)
        (root / "evil.html").write_text("<!doctype html><title>another origin</title>")
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
        handler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self):
        return f"http://127.0.0.1:{self.port}/evil.html"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_page_of_another_origin_cannot_use_the_token_cookie(stack, browser, tmp_path):
    """The browser holds the user's token cookie for 127.0.0.1. The site's
    own page (served by nginx) connects with it and joins job_events-42. A
    page of another origin opens the gateway's websocket: the browser sends
    the same cookie, but with the page's Origin, which is not the origin of
    the Host the request names: refused (before issue 12 it joined
    job_events-42)."""
    ng = Nginx(tmp_path / "nginx", [stack.gw.port])
    other = OtherSite(tmp_path / "other")
    token = mint_token(7, "integration-test-secret-0123456789abcdef",
                       "--objects", json.dumps({"job_events": [42]}))
    site_ws = json.dumps(ng.url("/websocket/").replace("http://", "ws://"))
    gateway_ws = json.dumps(f"ws://127.0.0.1:{stack.gw.port}/websocket/")

    async def main():
        page = await Page.open(browser)
        try:
            # Host-only, as a site sets it: sent to every port of 127.0.0.1.
            await page.send("Network.setCookie", name="token", value=token,
                            url=ng.url("/"))
            await page.navigate(other.url())
            evil = await page.eval(OPEN_WS % (gateway_ws, "null"))
            await page.navigate(ng.url("/wsgw-demo/"))
            own = await page.eval(OPEN_WS % (site_ws, "null"))
            return evil, own
        finally:
            await page.close()

    try:
        evil, own = run(main(), timeout=60)
    finally:
        other.stop()
        ng.stop()
    # The site's own page: accepted, joined (no csrftoken cookie here).
    assert own["opened"], own
    assert json.loads(own["seen"][0]) == {"accept": True, "user": 7}
    assert json.loads(own["seen"][1])["groups_current"] == ["job_events-42"]
    # The other origin's page: the browser sent the cookie (the worker saw
    # it), the handshake was refused, nothing joined.
    assert not evil["opened"] and evil["seen"] == [], evil
    workers = [d for d in stack.daemons if d.name.startswith("workerd")]
    wait_until(lambda: any('reason="cookie token from a disallowed Origin"' in w.log()
                           for w in workers), 10,
               "the worker to refuse the other origin's cookie token")


def test_console_rides_out_a_gateway_restart(stack, browser, tmp_path):
    """Through the SDK the console reconnects by itself: the gateway behind
    nginx is restarted (SIGTERM: 1001) while events are emitted, and every
    event is on the page once, in order, with no gap reported."""
    from test_sdk_browser import restart_on_same_port
    ng = Nginx(tmp_path / "nginx", [stack.gw.port])
    token = mint_token(7, "integration-test-secret-0123456789abcdef",
                       "--objects", json.dumps({"job_events": [42]}))
    texts = [json.dumps({"counter": i}) for i in range(1, 41)]

    async def main():
        page = await Page.open(browser)
        try:
            await page.navigate(ng.url(f"/wsgw-demo/?token={quote(token)}"))
            await page.eval("document.getElementById('connect').click()")
            await page.wait_for("document.getElementById('groups-current').textContent "
                                "=== 'job_events-42 jobs-status_changed'", what="the reply")
            await asyncio.to_thread(stack.emit_stdin, "job_events-42", texts[:20])
            await page.wait_for("document.querySelectorAll('#log li.event').length >= 20",
                                what="the first 20 events")
            await asyncio.to_thread(stack.gw.kill, signal.SIGTERM)
            # Emitted while no gateway runs: the restarted one has them in
            # its history, and the SDK asks for them by position.
            await asyncio.to_thread(stack.emit_stdin, "job_events-42", texts[20:30])
            stack.gw = await asyncio.to_thread(restart_on_same_port, stack, stack.gw)
            await asyncio.to_thread(stack.emit_stdin, "job_events-42", texts[30:])
            await page.wait_for("document.querySelectorAll('#log li.event').length >= 40",
                                20, "all 40 events after the restart")
            await asyncio.sleep(0.3)
            assert await page.eval(TEXTS.format(kind="event")) == texts
            assert await page.eval(TEXTS.format(kind="gap")) == []
            closes = await page.eval(TEXTS.format(kind="close"))
            assert closes and closes[0].startswith("code 1001"), closes
            assert await page.eval("document.getElementById('status').textContent") == "open"
            # The SDK's resubscription is shown as a reply: every group "ok".
            replies = [json.loads(t) for t in await page.eval(TEXTS.format(kind="reply"))]
            assert len(replies) == 2, replies
            assert replies[1]["recovery"] == {"job_events-42": "ok",
                                              "jobs-status_changed": "ok"}, replies
        finally:
            await page.close()

    try:
        run(main(), timeout=90)
    finally:
        ng.stop()


def test_console_with_a_gateway_without_history(stack, browser, tmp_path):
    """A gateway with history.enabled = false cannot serve wsgw.2; Chromium
    fails a handshake whose 101 names none of the subprotocols it offered,
    so the gateway answers wsgw.1, which the SDK offers too: the console
    joins on the old protocol at once (no failed handshake) and shows the
    events."""
    gw = stack.gateway(HISTORY_OFF)
    ng = Nginx(tmp_path / "nginx", [gw.port])
    token = mint_token(7, "integration-test-secret-0123456789abcdef",
                       "--objects", json.dumps({"job_events": [42]}))

    async def main():
        page = await Page.open(browser)
        try:
            await page.navigate(ng.url(f"/wsgw-demo/?token={quote(token)}"))
            await page.eval("document.getElementById('connect').click()")
            await page.wait_for("document.getElementById('groups-current').textContent "
                                "=== 'job_events-42 jobs-status_changed'", 20, "the reply")
            closes = await page.eval(TEXTS.format(kind="close"))
            assert closes == [], f"a failed handshake first: {closes}"
            await asyncio.to_thread(stack.emit_stdin, "job_events-42", JOB_EVENTS)
            await page.wait_for(f"document.querySelectorAll('#log li.event').length >= "
                                f"{len(JOB_EVENTS)}", what="the events")
            assert await page.eval(TEXTS.format(kind="event")) == JOB_EVENTS
            assert await page.eval("window.pwned === undefined")
        finally:
            await page.close()

    try:
        run(main(), timeout=60)
    finally:
        ng.stop()
