"""Fan-out at a realistic size: 1,000 websocket clients in one group, 100
events, every client gets every event once and in order."""

import asyncio
import json
import time

from conftest import open_client, recv_text, run, subscribe

CLIENTS = 1000
EVENTS = 100


def test_1000_clients_receive_100_events_in_order(stack):
    events = [json.dumps({"event": "runner_on_ok", "counter": i, "stdout": "ok: [host]"})
              for i in range(EVENTS)]

    async def main():
        sem = asyncio.Semaphore(100)

        async def join(i):
            async with sem:
                ws = await open_client(stack.gw, user=1 + i % 50, open_timeout=30)
                errors, reply = await subscribe(ws, {"jobs": ["status_changed"]}, timeout=30)
                assert reply["groups_current"] == ["jobs-status_changed"]
                return ws

        t0 = time.monotonic()
        clients = await asyncio.gather(*(join(i) for i in range(CLIENTS)))
        t1 = time.monotonic()

        async def receive_all(ws):
            return [await recv_text(ws, timeout=60, what="the next of 100 events")
                    for _ in range(EVENTS)]

        receivers = [asyncio.create_task(receive_all(ws)) for ws in clients]
        await asyncio.to_thread(stack.emit_stdin, "jobs-status_changed", events)
        results = await asyncio.gather(*receivers)
        t2 = time.monotonic()
        bad = [i for i, got in enumerate(results) if got != events]
        assert not bad, f"{len(bad)} clients got wrong events, e.g. #{bad[0]}: {results[bad[0]][:5]}"
        print(f"{CLIENTS} clients connected+subscribed in {t1 - t0:.1f}s; "
              f"{CLIENTS * EVENTS} deliveries in {t2 - t1:.1f}s")
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    run(main(), timeout=240)
