"""The JS SDK (clients/js/src/wsgw.js) in a real browser against the real
stack (issue 15, item 1): headless Chromium (tests/e2e/cdp.py) loads a page
that imports the SDK as an ES module (tests/e2e/sdk_site.py,
tests/e2e/sdk_page.html), subscribes to jobs-status_changed and
job_events-42, and records every event per group while a backend emits
{"seq": n} to both groups every EMIT_EVERY s (pika, with confirms).

Each test shows the page's events per group complete (1..last), in order,
without duplicates, across:
- the gateway SIGKILLed under the page and started again on its port: the
  SDK reconnects with backoff, resubscribes with its positions, recovery
  "ok", no gap;
- the gateway restarted (SIGTERM: the page sees 1001), the same;
- short-lived tokens (6 s; --auth.leeway=1s, --gateway.refresh_window=1s):
  the page's token callback is called before each expiry and the SDK sends
  {"token": ...}; the one connection is never closed 4401;
- a refused refresh: the gateway closes 4401, the SDK gets a fresh token
  from the callback and reconnects; an expired first token is replaced
  after two failed handshakes (a browser sees them as 1006);
- the connection going silent (tests/e2e/stallproxy.py): the wsgw.2
  heartbeat tells the SDK it is dead after 2N+5 s; it reconnects;
- a kick (chanctl kick --user): the page stops (why "kicked", 4403) and
  never opens another websocket (counted by DevTools), its events up to the
  kick complete.
"""

import asyncio
import functools
import json
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from conftest import Daemon, Gateway, jwt_for, run, run_tool, wait_until
import faults

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from cdp import Browser, Page  # noqa: E402
from sdk_site import SDK, SdkSite  # noqa: E402

USER = 7
GROUPS = {"jobs": ["status_changed"], "job_events": [42]}
NAMES = ("jobs-status_changed", "job_events-42")
OBJECTS = {"job_events": [42]}
EMIT_EVERY = 0.02  # 50 events/s per group
TOKEN_TTL = 6      # seconds, the refresh test's tokens

pytestmark = pytest.mark.skipif(not SDK.exists(), reason="clients/js/src/wsgw.js not in this tree")


# The page's two groups, every EMIT_EVERY s (faults.SeqEmitter).
SeqEmitter = functools.partial(faults.SeqEmitter, names=NAMES, every=EMIT_EVERY)


class PageRig:
    """The SDK page in one Chromium tab, and reads of what it recorded."""

    def __init__(self, browser, site, ws_url, auth="callback", **knobs):
        self.browser, self.site = browser, site
        self.query = urlencode({"ws": ws_url, "groups": json.dumps(GROUPS), "auth": auth,
                                **knobs})
        self.page = None

    async def open(self):
        self.page = await Page.open(self.browser)
        await self.page.navigate(self.site.url("/sdk.html?" + self.query))
        await self.page.wait_for("window.rec && window.rec.loaded", 20,
                                 "the page's first subscription reply")
        rec = await self.rec()
        assert "startError" not in rec, rec["startError"]
        assert len(rec["replies"]) == 1, rec
        return rec["replies"][0]

    async def rec(self):
        return await self.page.eval("window.rec")

    def websockets_opened(self):
        """Websockets the page opened (DevTools' count, not the SDK's word)."""
        return [p["url"] for m, p in self.page.events if m == "Network.webSocketCreated"]

    async def wait_events(self, last, timeout=20):
        """Until every group has reached seq `last` (or gone past it)."""
        expr = ("(r => %s)(window.rec)" %
                " && ".join(f"(r.seqs[{json.dumps(g)}] || []).includes({last})" for g in NAMES))
        await self.page.wait_for(expr, timeout, f"seq {last} in every group on the page")

    async def wait_count(self, n, timeout=20):
        expr = ("(r => %s)(window.rec)" %
                " && ".join(f"(r.seqs[{json.dumps(g)}] || []).length >= {n}" for g in NAMES))
        await self.page.wait_for(expr, timeout, f"{n} events per group on the page")

    async def close(self):
        if self.page:
            await self.page.close()


def assert_recovered(rec, reconnects=1):
    """The SDK's resubscriptions after reconnects: each named every group
    "ok" (no gap), and there was one per reconnect at least."""
    again = rec["subscribed"][1:]
    assert len(again) >= reconnects, rec["subscribed"]
    for r in again:
        assert sorted(r["current"]) == sorted(NAMES) and r["refused"] == [], r
        assert r["recovery"] == {g: "ok" for g in NAMES}, r


def assert_complete(rec, last, first=1):
    """Every group's events first..last, in order, each once; nothing else."""
    for g in NAMES:
        got = rec["seqs"].get(g, [])
        dups = len(got) - len(set(got))
        assert got == list(range(first, last + 1)), (
            f"{g}: {len(got)} events, expected {last - first + 1}; duplicates {dups}; "
            f"first differences {_diff(got, list(range(first, last + 1)))}")
    assert rec["other"] == [], rec["other"][:5]
    assert not rec["overflow"]


def _diff(got, want):
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"at {i}: {got[max(0, i - 3):i + 4]} vs {want[max(0, i - 3):i + 4]}"
    return f"lengths {len(got)} vs {len(want)}"


def restart_on_same_port(cluster, gw):
    """A new gatewayd with gw's command line (its port, its metrics port),
    as a service manager restarts one; the page's URL stays valid."""
    new = Gateway.__new__(Gateway)
    n = sum(1 for d in cluster.daemons if isinstance(d, Gateway)) + 1
    Daemon.__init__(new, f"gatewayd#{gw.name}-restart{n}",
                    gw.argv, gw.log_path.with_name(f"{gw.log_path.stem}-restart{n}.log"))
    new.port, new.metrics_port = gw.port, gw.metrics_port
    cluster.daemons.append(new)
    cluster.wait_gateway(new)
    return new


@pytest.fixture
def browser(tmp_path):
    b = Browser.launch(tmp_path / "chromium")
    yield b
    b.stop()


@pytest.fixture
def site():
    s = SdkSite(lambda: jwt_for(USER, ttl=3600, objects=OBJECTS))
    yield s
    s.stop()


def first_reply_ok(reply):
    assert sorted(reply["current"]) == sorted(NAMES), reply
    assert reply["refused"] == [], reply


async def across_gateway_loss(cluster, gw, rig, stop_gateway, figures):
    """Events flowing; stop_gateway(gw) under the page; a new gateway on the
    same port; the page's events complete. Returns the page's record."""
    first_reply_ok(await rig.open())
    seqs = SeqEmitter(cluster.amqp_url).start()
    try:
        await rig.wait_count(20)
        replies_before = len((await rig.rec())["replies"])
        await asyncio.to_thread(stop_gateway, gw)
        t_down = time.monotonic()
        await seqs.wait_past(seqs.last + 25)  # events the page cannot get now
        await asyncio.to_thread(restart_on_same_port, cluster, gw)
        t_up = time.monotonic()
        # The SDK's resubscription after the reconnect is not a subscribe()
        # call: no new reply in rec.replies; its recovery shows as "gap" if
        # it was not ok. Events after the restart prove it resubscribed.
        mark = seqs.last + 10
        await seqs.wait_past(mark)
        await rig.wait_events(mark, 30)
        figures["down_s"] = round(t_up - t_down, 2)
        figures["events_back_after_restart_s"] = round(time.monotonic() - t_up, 2)
    finally:
        last = await asyncio.to_thread(seqs.finish)
    await rig.wait_events(last, 20)
    await asyncio.sleep(0.3)  # a late duplicate would arrive now
    rec = await rig.rec()
    assert_complete(rec, last)
    assert rec["gaps"] == [], rec["gaps"]
    assert rec["stopped"] == [], rec["stopped"]
    assert len(rec["replies"]) == replies_before
    assert_recovered(rec)
    assert rec["states"][-1]["state"] == "open", rec["states"][-3:]
    opened = rig.websockets_opened()
    assert len(opened) >= 2, opened  # it did reconnect
    figures["events_per_group"] = last
    figures["websockets_opened"] = len(opened)
    figures["emitter_retries"] = seqs.retries
    return rec


def test_gateway_killed_under_the_page(cluster, browser, site):
    cluster.worker()
    gw = cluster.gateway()
    rig = PageRig(browser, site, gw.url())
    figures = {}

    async def main():
        try:
            rec = await across_gateway_loss(cluster, gw, rig, lambda g: g.kill(signal.SIGKILL),
                                            figures)
            # A dead TCP peer: the browser reports 1006; the SDK waited.
            codes = [s["code"] for s in rec["states"] if s["state"] == "waiting"]
            assert 1006 in codes, rec["states"]
        finally:
            await rig.close()
    run(main(), timeout=120)
    print(f"\nsdk page, gateway SIGKILLed: {figures}")


def test_gateway_restarted_under_the_page(cluster, browser, site):
    cluster.worker()
    gw = cluster.gateway()
    rig = PageRig(browser, site, gw.url())
    figures = {}

    def sigterm(g):
        g.kill(signal.SIGTERM)  # a clean shutdown: its clients get 1001

    async def main():
        try:
            rec = await across_gateway_loss(cluster, gw, rig, sigterm, figures)
            codes = [s["code"] for s in rec["states"] if s["state"] == "waiting"]
            assert codes and codes[0] == 1001, rec["states"]
        finally:
            await rig.close()
    run(main(), timeout=120)
    print(f"\nsdk page, gateway restarted: {figures}")


def test_short_lived_token_refreshed_by_the_page(cluster, browser):
    """Tokens of TOKEN_TTL s from the page's callback; the gateway would
    close 4401 at exp + 1 s + 1 s without a refresh. Over 3 lifetimes the
    one websocket stays open and every event arrives."""
    cluster.worker("--auth.leeway=1s")
    gw = cluster.gateway("--gateway.refresh_window=1s")
    s = SdkSite(lambda: jwt_for(USER, ttl=TOKEN_TTL, objects=OBJECTS))
    rig = PageRig(browser, s, gw.url())
    figures = {}

    async def main():
        try:
            first_reply_ok(await rig.open())
            seqs = SeqEmitter(cluster.amqp_url).start()
            try:
                t0 = time.monotonic()
                await rig.page.wait_for("window.rec.refreshed.length >= 3",
                                        4 * TOKEN_TTL, "three refreshes on the page")
                figures["three_refreshes_s"] = round(time.monotonic() - t0, 2)
                await asyncio.sleep(1)
            finally:
                last = await asyncio.to_thread(seqs.finish)
            await rig.wait_events(last)
            rec = await rig.rec()
            assert_complete(rec, last)
            assert rec["stopped"] == [] and rec["gaps"] == [], rec
            assert [x for x in rec["states"] if x["state"] != "open"
                    and x["state"] != "connecting"] == [], rec["states"]
            assert len(rig.websockets_opened()) == 1, rig.websockets_opened()
            assert len(rec["subscribed"]) == 1, rec["subscribed"]
            # Each refresh moved the expiry forward.
            exps = [r["expires"] for r in rec["refreshed"]]
            assert exps == sorted(exps) and len(set(exps)) == len(exps), exps
            # The first token, then one per refresh (a retry may add one).
            assert rec["tokens"] >= 1 + len(exps), rec["tokens"]
            figures.update(events_per_group=last, refreshes=len(exps),
                           tokens_served=s.tokens_served)
        finally:
            await rig.close()
            s.stop()
    run(main(), timeout=120)
    print(f"\nsdk page, short-lived tokens: {figures}")


def test_kick_stops_the_page(cluster, browser, site):
    cluster.worker()
    gw = cluster.gateway()
    rig = PageRig(browser, site, gw.url())
    figures = {}

    async def main():
        try:
            first_reply_ok(await rig.open())
            seqs = SeqEmitter(cluster.amqp_url).start()
            try:
                await rig.wait_count(20)
                # events need no binding (the history); the kick needs the
                # users' control keys bound (wsgw!user.*), queued at broker-up
                key = "wsgw!user.*"
                await asyncio.to_thread(
                    wait_until, lambda: cluster.broker.group_bindings(cluster.vhost, key), 10,
                    f"the binding of {key}", 0.1)
                await asyncio.to_thread(run_tool, ["kick", "--user", str(USER),
                                                   f"--amqp.url={cluster.amqp_url}"])
                await rig.page.wait_for("window.rec.stopped.length > 0", 10,
                                        "the page to stop after the kick")
                at_stop = await rig.rec()
                # Emitting goes on; a page that reconnected would get these.
                await seqs.wait_past(seqs.last + 50)
                await asyncio.sleep(2)
            finally:
                await asyncio.to_thread(seqs.finish)
            rec = await rig.rec()
            assert rec["stopped"] == [{"code": 4403, "reason": rec["stopped"][0]["reason"],
                                       "why": "kicked"}], rec["stopped"]
            assert rec["states"][-1]["state"] == "stopped", rec["states"]
            assert len(rig.websockets_opened()) == 1, rig.websockets_opened()
            assert rec["seqs"] == at_stop["seqs"], "events after the stop"
            got = rec["seqs"][NAMES[0]]
            # Up to the kick: complete, in order, once (each group up to its own last).
            for g in NAMES:
                assert rec["seqs"][g] == list(range(1, len(rec["seqs"][g]) + 1)), g
            assert await rig.page.eval("window.client.state") == "stopped"
            figures.update(events_before_kick=len(got), websockets_opened=1)
        finally:
            await rig.close()
    run(main(), timeout=120)
    print(f"\nsdk page, kicked: {figures}")


class TokenPlan:
    """The token endpoint's answers in order: each entry is a ttl in
    seconds (negative: a token already expired); the last one repeats."""

    def __init__(self, *ttls):
        self.ttls, self.calls = list(ttls), 0

    def __call__(self):
        ttl = self.ttls[min(self.calls, len(self.ttls) - 1)]
        self.calls += 1
        return jwt_for(USER, ttl=ttl, objects=OBJECTS)


def test_expired_connection_reconnects_with_a_fresh_token(cluster, browser):
    """The refresh is refused (the callback hands out an expired token), so
    the gateway closes 4401 at exp + leeway + window; the SDK asks the
    callback again, reconnects with the fresh token and its positions: the
    events are complete across the 4401."""
    cluster.worker("--auth.leeway=1s")
    gw = cluster.gateway("--gateway.refresh_window=1s")
    plan = TokenPlan(4, -60, 3600)
    s = SdkSite(plan)
    rig = PageRig(browser, s, gw.url())
    figures = {}

    async def main():
        try:
            first_reply_ok(await rig.open())
            seqs = SeqEmitter(cluster.amqp_url).start()
            try:
                await rig.page.wait_for(
                    "window.rec.states.some(s => s.code === 4401)", 15,
                    "the gateway's 4401 close after the refused refresh")
                t_close = time.monotonic()
                mark = seqs.last + 25
                await seqs.wait_past(mark)
                await rig.wait_events(mark, 20)
                figures["events_back_after_4401_s"] = round(time.monotonic() - t_close, 2)
            finally:
                last = await asyncio.to_thread(seqs.finish)
            await rig.wait_events(last)
            await asyncio.sleep(0.3)
            rec = await rig.rec()
            assert_complete(rec, last)
            assert rec["stopped"] == [] and rec["gaps"] == [], rec
            assert rec["refreshed"] == [], rec["refreshed"]  # the expired one was refused
            assert_recovered(rec)
            assert rec["states"][-1]["state"] == "open"
            assert len(rig.websockets_opened()) == 2, rig.websockets_opened()
            assert plan.calls >= 3, plan.calls  # first, the refused refresh, the fresh one
            figures.update(events_per_group=last, tokens_served=plan.calls)
        finally:
            await rig.close()
            s.stop()
    run(main(), timeout=120)
    print(f"\nsdk page, 4401 then a fresh token: {figures}")


def test_expired_first_token_replaced_by_the_callback(cluster, browser):
    """The first token the callback gives is expired: the browser only sees
    the handshake fail (1006 before open); after two such failures the SDK
    asks the callback for a fresh one, and the page subscribes."""
    cluster.worker("--auth.leeway=1s")
    gw = cluster.gateway()
    plan = TokenPlan(-60, 3600)
    s = SdkSite(plan)
    rig = PageRig(browser, s, gw.url())

    async def main():
        try:
            first_reply_ok(await rig.open())
            rec = await rig.rec()
            failed = [x for x in rec["states"] if x["state"] == "waiting"]
            assert len(failed) >= 2 and all(x["code"] == 1006 for x in failed), rec["states"]
            assert plan.calls == 2, plan.calls
            assert rec["stopped"] == []
        finally:
            await rig.close()
            s.stop()
    run(main(), timeout=60)


def test_silent_connection_detected_by_heartbeat(cluster, browser, site):
    """The page's connection goes silent (a proxy stops forwarding but
    closes nothing: the browser learns nothing from TCP). With a 1 s
    ping_interval the gateway sends {"heartbeat":1000} each second of client
    silence, so the SDK declares the connection dead after 2*1000+5000 ms,
    reconnects (the proxy forwards new connections) and recovers by
    position: every event once, in order."""
    from stallproxy import StallProxy
    cluster.worker()
    gw = cluster.gateway("--gateway.ping_interval=1s")
    proxy = StallProxy(gw.port)
    rig = PageRig(browser, site, f"ws://127.0.0.1:{proxy.port}/websocket/")
    figures = {}

    async def main():
        try:
            first_reply_ok(await rig.open())
            seqs = SeqEmitter(cluster.amqp_url).start()
            try:
                await rig.wait_count(20)
                await asyncio.sleep(1.5)  # a heartbeat has set N = 1000 ms
                states_before = len((await rig.rec())["states"])
                assert proxy.stall() == 1
                t_stall = time.monotonic()
                await rig.page.wait_for(
                    f"window.rec.states.length > {states_before}", 15,
                    "the SDK to give up the silent connection")
                figures["detected_after_s"] = round(time.monotonic() - t_stall, 2)
                # 2N + 5 s after the last message, which came within 20 ms
                # of the stall (events flow); not much later (timers, polling).
                assert 6.9 <= figures["detected_after_s"] <= 9, figures
                mark = seqs.last + 25
                await seqs.wait_past(mark)
                await rig.wait_events(mark, 20)
            finally:
                last = await asyncio.to_thread(seqs.finish)
            await rig.wait_events(last)
            await asyncio.sleep(0.3)
            rec = await rig.rec()
            assert_complete(rec, last)
            assert rec["gaps"] == [] and rec["stopped"] == [], rec
            assert proxy.accepted == 2 and proxy.discarded > 0, (proxy.accepted, proxy.discarded)
            assert_recovered(rec)
            figures.update(events_per_group=last, bytes_dropped_while_silent=proxy.discarded)
        finally:
            await rig.close()
            proxy.close()
    run(main(), timeout=120)
    print(f"\nsdk page, silent connection: {figures}")
