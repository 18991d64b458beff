"""The subscription request and its replies (docs/PROTOCOL.md,
"Subscribing" and "Access policy")."""

import json

from conftest import (SECRET, connect, jwt_for, mint_token, open_client, recv_json, run,
                      send_request, subscribe)


def test_reply_lists_are_sorted(stack):
    async def main():
        ws = await open_client(stack.gw, user=7)
        errors, reply = await subscribe(ws, {"jobs": ["summary", "status_changed"],
                                             "schedules": "changed"})
        assert errors == []
        assert reply == {"groups_current": ["jobs-status_changed", "jobs-summary", "schedules"],
                         "groups_joined": ["jobs-status_changed", "jobs-summary", "schedules"],
                         "groups_left": []}
        await ws.close()
    run(main())


def test_new_request_replaces_the_set(stack):
    async def main():
        ws = await open_client(stack.gw)
        await subscribe(ws, {"jobs": ["status_changed", "summary"]})
        errors, reply = await subscribe(ws, {"jobs": ["summary"], "schedules": ["changed"]})
        assert errors == []
        assert reply == {"groups_current": ["jobs-summary", "schedules-changed"],
                         "groups_joined": ["schedules-changed"],
                         "groups_left": ["jobs-status_changed"]}
        errors, reply = await subscribe(ws, {})
        assert reply == {"groups_current": [], "groups_joined": [],
                         "groups_left": ["jobs-summary", "schedules-changed"]}
        await ws.close()
    run(main())


def test_invalid_json_is_an_error(stack):
    async def main():
        ws = await open_client(stack.gw)
        assert await send_request(ws, '{"groups": ') == {"error": "invalid JSON"}
        await ws.close()
    run(main())


def test_non_object_request_is_an_error(stack):
    async def main():
        ws = await open_client(stack.gw)
        assert await send_request(ws, "[1, 2]") == {"error": "request must be a JSON object"}
        await ws.close()
    run(main())


def test_unknown_channel_is_an_error(stack):
    async def main():
        ws = await open_client(stack.gw)
        reply = await send_request(ws, json.dumps({"groups": {"no_such_channel": ["x"]}}))
        assert reply == {"error": "unknown channel: no_such_channel"}
        await ws.close()
    run(main())


def test_error_request_changes_nothing(stack):
    async def main():
        ws = await open_client(stack.gw)
        await subscribe(ws, {"jobs": ["summary"]})
        assert await send_request(ws, "nope") == {"error": "invalid JSON"}
        errors, reply = await subscribe(ws, {"jobs": ["summary"]})
        assert reply["groups_current"] == ["jobs-summary"] and reply["groups_joined"] == []
        await ws.close()
    run(main())


def test_object_channel_without_grant_is_denied(stack):
    async def main():
        ws = await open_client(stack.gw, user=7)
        errors, reply = await subscribe(ws, {"job_events": [42], "jobs": ["summary"]})
        assert errors == [{"error": "access denied to channel job_events for resource id 42"}]
        assert reply == {"groups_current": ["jobs-summary"], "groups_joined": ["jobs-summary"],
                         "groups_left": []}
        await ws.close()
    run(main())


def test_object_channel_with_grant_is_joined(stack):
    token = jwt_for(7, objects={"job_events": [42]})

    async def main():
        ws = await open_client(stack.gw, user=7, token=token)
        errors, reply = await subscribe(ws, {"job_events": [42, 43]})
        assert errors == [{"error": "access denied to channel job_events for resource id 43"}]
        assert reply["groups_current"] == ["job_events-42"]
        await ws.close()
    run(main())


def test_object_grant_in_chanctl_token_is_honoured(stack):
    token = mint_token(9, SECRET, "--objects", '{"job_events": [42]}')

    async def main():
        ws = await open_client(stack.gw, user=9, token=token)
        errors, reply = await subscribe(ws, {"job_events": [42]})
        assert errors == [] and reply["groups_current"] == ["job_events-42"]
        await ws.close()
    run(main())


def test_control_limit_reached_of_other_user_is_refused(stack):
    async def main():
        ws = await open_client(stack.gw, user=7)
        errors, reply = await subscribe(ws, {"control": ["limit_reached_8"]})
        assert len(errors) == 1 and "access denied" in errors[0].get("error", ""), errors
        assert reply["groups_current"] == []
        await ws.close()
    run(main())


def test_control_limit_reached_of_own_user_is_joined(stack):
    async def main():
        ws = await open_client(stack.gw, user=7)
        errors, reply = await subscribe(ws, {"control": ["limit_reached_7"]})
        assert errors == []
        assert reply["groups_current"] == ["control-limit_reached_7"]
        await ws.close()
    run(main())


def test_xrftoken_mismatch_is_refused_when_csrftoken_cookie_was_sent(stack):
    async def main():
        headers = {"Cookie": "csrftoken=abc123"}
        async with connect(stack.gw.url(token=jwt_for(7)), headers) as ws:
            await recv_json(ws, what="the accept message")
            reply = await send_request(ws, json.dumps({"groups": {"jobs": ["summary"]},
                                                       "xrftoken": "wrong"}))
            assert reply == {"error": "xrftoken mismatch"}
            reply = await send_request(ws, json.dumps({"groups": {"jobs": ["summary"]}}))
            assert reply == {"error": "xrftoken mismatch"}
    run(main())


def test_xrftoken_matching_csrftoken_cookie_is_accepted(stack):
    async def main():
        headers = {"Cookie": "csrftoken=abc123"}
        async with connect(stack.gw.url(token=jwt_for(7)), headers) as ws:
            await recv_json(ws, what="the accept message")
            errors, reply = await subscribe(ws, {"jobs": ["summary"]}, xrftoken="abc123")
            assert errors == [] and reply["groups_current"] == ["jobs-summary"]
    run(main())


def test_binary_message_is_an_error(stack):
    async def main():
        ws = await open_client(stack.gw)
        await ws.send(b'{"groups": {}}')
        assert await recv_json(ws) == {"error": "binary messages are not supported"}
        await ws.close()
    run(main())
