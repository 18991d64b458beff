"""The JS SDK in headless Chromium across a RabbitMQ node failover (issue
15, item 1), on test_faults_cluster.py's private 3-node cluster (its
fixtures and helpers, reused).

Two workers and gateways A and B on different nodes; the SDK page
(tests/e2e/sdk_page.html) connects to gateway A and subscribes to
jobs-status_changed and job_events-42 while a backend on B's node emits
{"seq": n} to both every 20 ms (with confirms, publishing again what the
broker refused). A's node is SIGKILLed; right after, the page subscribes
again (a request that may meet "no worker answered in time" while the
workers fail over, which the SDK retries). Shown: the page's request is
answered, gateway A moves to another node, and the page's events per group
are complete, in order, without duplicates and without a gap, whether the
page kept its websocket or reconnected.

Slow (cluster start 10-60 s): run by `make test-faults`.
"""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BROKER_SH, jwt_for, run
from faults import SLOW, wait_record
from test_faults_cluster import (OPTS, ccluster, gateways_on_two_nodes,  # noqa: F401
                                 node_of, rabbit_cluster, VHOST)
from test_faults_broker import epoch
from test_sdk_browser import (GROUPS, NAMES, OBJECTS, USER, PageRig, SeqEmitter,
                              assert_complete, first_reply_ok)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from cdp import Browser  # noqa: E402
from sdk_site import SDK, SdkSite  # noqa: E402

pytestmark = [SLOW, pytest.mark.skipif(not SDK.exists(), reason="no clients/js/src/wsgw.js")]


@pytest.fixture
def browser(tmp_path):
    b = Browser.launch(tmp_path / "chromium")
    yield b
    b.stop()


def test_sdk_page_across_a_node_failover(ccluster, rabbit_cluster, browser):
    c, nodes = ccluster, rabbit_cluster
    c.worker(*OPTS)
    c.worker(*OPTS)
    gw_a, dead, gw_b = gateways_on_two_nodes(c, nodes)
    site = SdkSite(lambda: jwt_for(USER, ttl=3600, objects=OBJECTS))
    rig = PageRig(browser, site, gw_a.url())
    figures = {}

    async def main():
        try:
            await scenario()
        finally:
            await rig.close()

    async def scenario():
        first_reply_ok(await rig.open())
        seqs = SeqEmitter(node_of(gw_b, "amqp_up", nodes).url(VHOST)).start()
        try:
            await rig.wait_count(20)
            t_kill = time.time()
            await asyncio.to_thread(subprocess.run, [str(BROKER_SH), "kill", str(dead.dir)],
                                    check=True, timeout=60, stdout=subprocess.DEVNULL)
            c.broker = next(n for n in nodes if n is not dead)  # rabbitmqctl from here on
            # A subscription request while the workers fail over. It waits for
            # the failover and then for the SDK's backoff, which the refused
            # handshakes meanwhile have grown (1 run in 6 took over 15 s).
            reply = await rig.page.eval(f"window.subscribeNow({json.dumps(GROUPS)})", timeout=60)
            figures["request_answered_s"] = round(time.time() - t_kill, 2)
            assert reply is not None, (await rig.rec())["rejects"]
            first_reply_ok(reply)
            up = (await asyncio.to_thread(wait_record, gw_a, "amqp_up", 30, 2))[1]
            figures["gw_a_failover_s"] = round(epoch(up) - t_kill, 2)
            assert node_of(gw_a, "amqp_up", nodes) is not dead
            await asyncio.to_thread(wait_record, gw_a, "hist_live", 30, 2)
            mark = seqs.last + 25
            await seqs.wait_past(mark)
            await rig.wait_events(mark, 30)
            figures["events_flowing_again_s"] = round(time.time() - t_kill, 2)
        finally:
            last = await asyncio.to_thread(seqs.finish)
        await rig.wait_events(last, 30)
        await asyncio.sleep(0.5)  # a late duplicate would arrive now
        rec = await rig.rec()
        assert_complete(rec, last)
        assert rec["gaps"] == [] and rec["stopped"] == [], rec
        # Every subscription reply after the kill (the page's request, the
        # SDK's own after a reconnect) recovered every group.
        for r in rec["subscribed"][1:]:
            assert r["recovery"] == {g: "ok" for g in NAMES}, r
        assert rec["states"][-1]["state"] == "open", rec["states"][-3:]
        figures["states"] = [(s["state"], s["code"]) for s in rec["states"]]
        figures.update(events_per_group=last, emitter_retries=seqs.retries,
                       websockets_opened=len(rig.websockets_opened()))

    try:
        run(main(), timeout=180)
    finally:
        site.stop()
    print(f"\nsdk page across a node failover: {figures}")
