"""Emitted events reach subscribers as the exact text, from chanctl and from
Python (docs/PROTOCOL.md, "Receiving events" and "Emitting an event")."""

import asyncio
import json

from conftest import nothing_arrives, open_client, recv_text, run, subscribe

# Not what json.dumps would write: odd spacing, key order, escapes and
# non-ASCII text must all survive unchanged.
EVENT = '{"status":  "running", "unified_job_id":42,"msg":"caf\u00e9 \\u00e9 \u2603 \U0001F600","a":[1 ,2]}'


def test_event_emitted_with_chanctl_arrives_byte_for_byte(stack):
    async def main():
        ws = await open_client(stack.gw)
        await subscribe(ws, {"jobs": ["status_changed"]})
        await asyncio.to_thread(stack.emit, "jobs-status_changed", EVENT)
        assert await recv_text(ws, what="the emitted event") == EVENT
        await ws.close()
    run(main())


def test_event_emitted_with_pika_arrives_byte_for_byte(stack):
    async def main():
        ws = await open_client(stack.gw)
        await subscribe(ws, {"jobs": ["summary"]})
        emitter = stack.pika_emitter()
        try:
            await asyncio.to_thread(emitter.emit, "jobs-summary", EVENT)
        finally:
            emitter.close()
        assert await recv_text(ws, what="the emitted event") == EVENT
        await ws.close()
    run(main())


def test_events_of_other_groups_do_not_arrive(stack):
    async def main():
        ws = await open_client(stack.gw)
        await subscribe(ws, {"jobs": ["summary"]})
        emitter = stack.pika_emitter()
        try:
            emitter.emit("jobs-status_changed", '{"other": 1}')
            emitter.emit("jobs-summary", '{"sentinel": 1}')
        finally:
            emitter.close()
        assert await recv_text(ws, what="the sentinel") == '{"sentinel": 1}'
        await ws.close()
    run(main())


def test_new_request_stops_events_of_the_old_groups(stack):
    async def main():
        ws = await open_client(stack.gw)
        await subscribe(ws, {"jobs": ["status_changed"]})
        errors, reply = await subscribe(ws, {"jobs": ["summary"]})
        assert reply["groups_left"] == ["jobs-status_changed"]
        emitter = stack.pika_emitter()
        try:
            for i in range(5):
                emitter.emit("jobs-status_changed", json.dumps({"old": i}))
                emitter.emit("jobs-summary", json.dumps({"new": i}))
            emitter.emit("jobs-summary", '{"sentinel": true}')
        finally:
            emitter.close()
        got = []
        while True:
            text = await recv_text(ws, what="the sentinel on the new group")
            if text == '{"sentinel": true}':
                break
            got.append(text)
        assert got == [json.dumps({"new": i}) for i in range(5)], got
        await ws.close()
    run(main())


def test_100_events_from_chanctl_stdin_arrive_in_order(stack):
    events = [json.dumps({"n": i, "line": "x" * (i % 7)}) for i in range(100)]

    async def main():
        ws = await open_client(stack.gw)
        await subscribe(ws, {"jobs": ["status_changed"]})
        await asyncio.to_thread(stack.emit_stdin, "jobs-status_changed", events)
        got = [await recv_text(ws, what=f"event {i} of 100") for i in range(100)]
        assert got == events
        await nothing_arrives(ws, 0.3)
        await ws.close()
    run(main())


def test_every_member_of_a_group_gets_the_event(stack):
    async def main():
        clients = [await open_client(stack.gw, user=u) for u in (1, 2, 3)]
        for ws in clients:
            await subscribe(ws, {"schedules": ["changed"]})
        await asyncio.to_thread(stack.emit, "schedules-changed", '{"schedule": 5}')
        for ws in clients:
            assert await recv_text(ws) == '{"schedule": 5}'
            await ws.close()
    run(main())
