"""Client-side helpers of the auth tests (test_auth_ambient.py,
test_auth_settings.py): the origin a page of the gateway itself has, the
worker's refusals by reason, and connect-then-subscribe."""

from conftest import connect, recv_json, subscribe
from faults import records


def own_origin(gw):
    return f"http://127.0.0.1:{gw.port}"


def refusals(wk, reason):
    return [r for r in records(wk, "connect_refused") if r.get("reason") == reason]


async def joined(url, headers, groups, xrftoken=None):
    """Connects, subscribes; returns (accept, errors, reply)."""
    async with connect(url, headers) as ws:
        accept = await recv_json(ws)
        errors, reply = await subscribe(ws, groups, xrftoken=xrftoken)
        return accept, errors, reply
