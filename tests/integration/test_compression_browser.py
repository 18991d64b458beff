"""permessage-deflate with a real browser (issue 16, item 4): headless
Chromium (tests/e2e/cdp.py) runs page JavaScript that opens a WebSocket to
gatewayd, subscribes, and keeps every message; the test emits AWX-like job
events (1-4 KB, test_compression.awx_events) with chanctl.

The page opens two websockets, one per group, and the events alternate
between the groups: the gateway compresses every event alone and shares
the frame, so each socket must read its messages without the others'
(a gateway that kept its compression context from one message to the
next would make every second message unreadable to each socket).

Shows, with compression on: Chromium offered the extension (its handshake
request, read by DevTools) and took the gateway's answer (ws.extensions,
the one thing a page sees of it, names permessage-deflate; DevTools shows
the 101's header); every event is on the page with its exact text, in
order; the gateway sent exactly that many compressed messages
(compressed_messages_sent_total). With compression off (the default):
ws.extensions is "", no compressed message, the same events intact.
"""

import asyncio
import json
import sys
from pathlib import Path

import pytest

from conftest import jwt_for, run
from test_compression import ANSWER, ON, awx_events, counters, grew

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from cdp import Browser, Page  # noqa: E402

# The page's two groups, one websocket each.
GROUPS = {"jobs-status_changed": {"jobs": ["status_changed"]},
          "jobs-summary": {"jobs": ["summary"]}}

# Opens a websocket and keeps what arrives in window.zws[NAME]: the accept
# message, the reply to one subscription, then events. Resolves once the
# reply is in (or the socket closed first).
OPEN = """new Promise(resolve => {
  const r = (window.zws = window.zws || {})[%s] =
      {msgs: [], extensions: null, closed: null};
  const ws = new WebSocket(%s);
  ws.onopen = () => { r.extensions = ws.extensions; };
  ws.onmessage = e => {
    r.msgs.push(e.data);
    if (r.msgs.length === 1) ws.send(JSON.stringify({groups: %s}));
    if (r.msgs.length === 2) resolve(r);
  };
  ws.onclose = e => { r.closed = e.code; resolve(r); };
})"""


@pytest.fixture
def browser(tmp_path):
    b = Browser.launch(tmp_path / "chromium")
    yield b
    b.stop()


def handshake(page, url):
    """(request headers, response headers) of the page's one websocket
    handshake to url, as DevTools saw them (names lower-cased)."""
    ids = [p["requestId"] for m, p in page.events
           if m == "Network.webSocketCreated" and p["url"] == url]
    assert len(ids) == 1, ids
    req = [p["request"]["headers"] for m, p in page.events
           if m == "Network.webSocketWillSendHandshakeRequest" and p["requestId"] == ids[0]]
    resp = [p["response"] for m, p in page.events
            if m == "Network.webSocketHandshakeResponseReceived" and p["requestId"] == ids[0]]
    assert len(req) == 1 and len(resp) == 1, (req, resp)
    assert resp[0]["status"] == 101, resp[0]
    lower = lambda h: {k.lower(): v for k, v in h.items()}  # noqa: E731
    return lower(req[0]), lower(resp[0]["headers"])


def emit_alternating(cluster, plan):
    """The groups' texts, one event of each group in turn (pika, with
    confirms: in this order on the broker)."""
    em = cluster.pika_emitter()
    try:
        for i in range(max(len(t) for t in plan.values())):
            for group, texts in plan.items():
                if i < len(texts):
                    em.emit(group, texts[i])
    finally:
        em.close()


def page_run(cluster, gw, browser, plan):
    """Opens one websocket per group of plan ({group: texts}) in one page,
    subscribes each, emits the texts alternating; returns per group what
    the page recorded and the handshake's headers, and the counters'
    growth over the events."""
    urls = {g: f"ws://127.0.0.1:{gw.port}/websocket/?token={jwt_for(7 + i)}"
            for i, g in enumerate(plan)}

    async def main():
        page = await Page.open(browser)
        try:
            for i, g in enumerate(plan):
                r = await page.eval(OPEN % (json.dumps(g), json.dumps(urls[g]),
                                            json.dumps(GROUPS[g])), timeout=20)
                assert r["closed"] is None, r
                assert json.loads(r["msgs"][0]) == {"accept": True, "user": 7 + i}
                assert json.loads(r["msgs"][1])["groups_current"] == [g], r
            before = counters(gw)
            await asyncio.to_thread(emit_alternating, cluster, plan)
            done = " && ".join(f"(window.zws[{json.dumps(g)}].msgs.length >= {2 + len(t)} "
                               f"|| window.zws[{json.dumps(g)}].closed !== null)"
                               for g, t in plan.items())
            await page.wait_for(done, 20, "every event on the page (or a socket closed)")
            await asyncio.sleep(0.2)  # anything more (there should be nothing) arrives
            r = await page.eval("window.zws")
            grown = grew(before, counters(gw))
            return {g: (r[g], handshake(page, urls[g])) for g in plan}, grown
        finally:
            await page.close()
    return run(main(), timeout=60)


def plan_of(seed):
    """8 job events (1-4 KB) per group."""
    return {g: awx_events(8, seed=seed + i, lo=1000) for i, g in enumerate(GROUPS)}


def test_chromium_negotiates_and_receives_compressed_events_intact(cluster, browser):
    """Compression on: Chromium's offer is answered, ws.extensions names
    permessage-deflate on both sockets, each socket's 8 job events (1-4 KB)
    are on the page exactly though every other compressed message went to
    the other socket, and the gateway compressed 16 and sent 16
    compressed messages, 14 of them after their group's previous event
    (Chromium keeps its window: they read only in it)."""
    cluster.worker(ready=False)
    gw = cluster.gateway(ON)
    plan = plan_of(21)
    seen, grown = page_run(cluster, gw, browser, plan)
    for g, (r, (req, resp)) in seen.items():
        print(f"{g}: Chromium offered {req.get('sec-websocket-extensions')!r}; "
              f"ws.extensions {r['extensions']!r}")
        assert "permessage-deflate" in req.get("sec-websocket-extensions", ""), req
        assert resp.get("sec-websocket-extensions") == ANSWER, resp
        assert r["extensions"].split(";")[0].strip() == "permessage-deflate", r["extensions"]
        assert r["closed"] is None, (g, r["closed"])
        assert r["msgs"][2:] == plan[g], g
    n = sum(len(t) for t in plan.values())
    # one compression per event; after the first of each group, each comes
    # after its group's previous one (the socket's window ends with it)
    assert grown["compressed_messages_sent"] == n, grown
    assert grown["compressions"] + grown["compressions_chained"] == n, grown
    assert grown["compressions_chained"] == n - len(plan), grown


def test_chromium_without_compression_gets_no_extension(cluster, browser):
    """Compression off: Chromium still offers, the 101 answers nothing,
    ws.extensions is "" and the same events arrive intact, none
    compressed (the gateway has no compression counters at all)."""
    cluster.worker(ready=False)
    gw = cluster.gateway()
    plan = plan_of(31)
    seen, grown = page_run(cluster, gw, browser, plan)
    for g, (r, (req, resp)) in seen.items():
        assert "permessage-deflate" in req.get("sec-websocket-extensions", ""), req
        assert "sec-websocket-extensions" not in resp, resp
        assert r["extensions"] == ""
        assert r["closed"] is None and r["msgs"][2:] == plan[g], g
    n = sum(len(t) for t in plan.values())
    assert grown["compressed_messages_sent"] == 0 and grown["messages_sent"] == n, grown
