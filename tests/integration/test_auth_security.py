"""Authentication and authorisation against hostile input, end to end
(the unit tests of proto/token.c check the verifier alone): only HS256
signed with a current secret, within exp/nbf and their leeway, passes; no
token reaches a log; CSRF, object grants and per-user groups hold; one user
never receives another user's private events."""

import base64
import hashlib
import hmac
import json
import time

import pytest

from conftest import (SECRET, connect, handshake_status, jwt_for, make_jwt, open_client,
                      recv_json, run, send_request, subscribe)
from rawws import finish_module_cluster, module_cluster

PREVIOUS = "integration-test-previous-secret-0123456789"
LEEWAY_S = 30


@pytest.fixture(scope="module")
def stack_m(broker, vhost, request, tmp_path_factory):
    """Both daemons at debug level: the most they ever log."""
    c = module_cluster(broker, vhost, request, tmp_path_factory)
    c.wk = c.worker(f"--auth.secret_previous={PREVIOUS}", f"--auth.leeway={LEEWAY_S}s",
                    "--log.level=debug", ready=False)
    c.gw = c.gateway("--log.level=debug")
    yield c
    finish_module_cluster(c)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(header, payload, secret=SECRET, digest=hashlib.sha256):
    """A JWT from raw header and payload bytes (not necessarily JSON)."""
    signing_input = b64url(header) + "." + b64url(payload)
    sig = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return signing_input + "." + b64url(sig)


def claims(**kw):
    base = {"sub": "7", "exp": int(time.time()) + 600}
    base.update(kw)
    return base


def status(stack_m, token):
    return run(handshake_status(stack_m.gw.url(token=token)))


def accepted_user(stack_m, token):
    async def main():
        async with connect(stack_m.gw.url(token=token)) as ws:
            return (await recv_json(ws))["user"]
    return run(main())


HS256 = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()


# ---- algorithms ------------------------------------------------------------

def test_alg_none_without_signature_is_403(stack_m):
    token = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." \
        + b64url(json.dumps(claims()).encode()) + "."
    assert status(stack_m, token) == 403


def test_rs256_header_signed_with_the_secret_as_hmac_key_is_403(stack_m):
    # the key-confusion attack: RS256 named, HMAC computed with the shared key
    token = signed(json.dumps({"alg": "RS256", "typ": "JWT"}).encode(),
                   json.dumps(claims()).encode())
    assert status(stack_m, token) == 403


def test_hs512_signed_with_the_secret_is_403(stack_m):
    token = signed(json.dumps({"alg": "HS512", "typ": "JWT"}).encode(),
                   json.dumps(claims()).encode(), digest=hashlib.sha512)
    assert status(stack_m, token) == 403


def test_lowercase_hs256_is_403(stack_m):
    token = signed(json.dumps({"alg": "hs256", "typ": "JWT"}).encode(),
                   json.dumps(claims()).encode())
    assert status(stack_m, token) == 403


def test_crit_header_is_403(stack_m):
    token = signed(json.dumps({"alg": "HS256", "typ": "JWT", "crit": ["exp"]}).encode(),
                   json.dumps(claims()).encode())
    assert status(stack_m, token) == 403


def test_signature_of_another_secret_is_403(stack_m):
    assert status(stack_m, jwt_for(7, secret="not-the-secret")) == 403


def test_truncated_signature_is_403(stack_m):
    assert status(stack_m, jwt_for(7)[:-2]) == 403


# ---- time claims and leeway ------------------------------------------------

def test_exp_within_the_leeway_is_accepted(stack_m):
    token = make_jwt(claims(exp=int(time.time()) - LEEWAY_S + 10))
    assert accepted_user(stack_m, token) == 7


def test_exp_beyond_the_leeway_is_403(stack_m):
    assert status(stack_m, make_jwt(claims(exp=int(time.time()) - LEEWAY_S - 10))) == 403


def test_missing_exp_is_403(stack_m):
    assert status(stack_m, make_jwt({"sub": "7"})) == 403


def test_nbf_within_the_leeway_is_accepted(stack_m):
    token = make_jwt(claims(nbf=int(time.time()) + LEEWAY_S - 10))
    assert accepted_user(stack_m, token) == 7


def test_nbf_beyond_the_leeway_is_403(stack_m):
    assert status(stack_m, make_jwt(claims(nbf=int(time.time()) + LEEWAY_S + 60))) == 403


# ---- malformed tokens ------------------------------------------------------

@pytest.mark.parametrize("token", [
    "a.b.c", "..", "onlyone", "two.parts", "a.b.c.d",
    "e30.e30.", "!!!.***.$$$",
], ids=["junk", "empty-parts", "one-part", "two-parts", "four-parts", "empty-sig", "not-b64"])
def test_malformed_token_is_403(stack_m, token):
    assert status(stack_m, token) == 403


@pytest.mark.parametrize("payload", [b"{not json", b"[]", b'"7"', b"", b'{"sub": "7", "exp":',
                                     b"\xff\xfe"],
                         ids=["broken", "array", "string", "empty", "cut", "not-utf8"])
def test_signed_token_whose_payload_is_not_a_json_object_is_403(stack_m, payload):
    assert status(stack_m, signed(HS256, payload)) == 403


def test_signed_token_whose_header_is_not_json_is_403(stack_m):
    assert status(stack_m, signed(b"{alg: HS256}", json.dumps(claims()).encode())) == 403


@pytest.mark.parametrize("sub", ["007", "-7", "abc", "", 0, -1, 7.5, None, [7]],
                         ids=["leading-zero", "negative-str", "letters", "empty", "zero",
                              "negative", "fraction", "null", "list"])
def test_invalid_subject_is_403(stack_m, sub):
    assert status(stack_m, make_jwt(claims(sub=sub))) == 403


def test_base64_with_padding_in_the_signature_is_403(stack_m):
    assert status(stack_m, jwt_for(7) + "=") == 403


# ---- key rotation ---------------------------------------------------------

def test_token_signed_with_the_current_secret_is_accepted(stack_m):
    assert accepted_user(stack_m, jwt_for(21, secret=SECRET)) == 21


def test_token_signed_with_the_previous_secret_is_accepted(stack_m):
    assert accepted_user(stack_m, jwt_for(22, secret=PREVIOUS)) == 22


def test_token_signed_with_neither_secret_is_403(stack_m):
    assert status(stack_m, jwt_for(23, secret=PREVIOUS + "x")) == 403


# ---- tokens never logged ----------------------------------------------------

def test_no_token_appears_in_either_daemons_log(stack_m):
    good = jwt_for(31)
    bad = jwt_for(32, secret="wrong-secret-for-the-log-test")

    async def main():
        async with connect(stack_m.gw.url(token=good)) as ws:
            await recv_json(ws)
        async with connect(stack_m.gw.url(), {"Cookie": f"token={good}; csrftoken=c",
                                              "Origin": f"http://127.0.0.1:{stack_m.gw.port}"}) \
                as ws:
            await recv_json(ws)
        async with connect(stack_m.gw.url(), {"Authorization": f"Bearer {good}"}) as ws:
            await recv_json(ws)
        assert await handshake_status(stack_m.gw.url(token=bad)) == 403
        assert await handshake_status(stack_m.gw.url(), {"Authorization": f"Bearer {bad}"}) \
            == 403
    run(main())
    for daemon in (stack_m.gw, stack_m.wk):
        log = daemon.log()
        assert "event=" in log  # it did log (at debug level)
        for token in (good, bad):
            for part in token.split("."):
                assert part not in log, f"{daemon.name} logged part of a token"


# ---- CSRF: xrftoken against the csrftoken cookie -----------------------------

def test_without_a_csrftoken_cookie_any_xrftoken_is_ignored(stack_m):
    async def main():
        ws = await open_client(stack_m.gw, user=7)
        errors, reply = await subscribe(ws, {"jobs": ["status_changed"]}, xrftoken="anything")
        assert errors == [] and reply["groups_current"] == ["jobs-status_changed"]
        await ws.close()
    run(main())


def test_csrftoken_cookie_without_xrftoken_is_refused(stack_m):
    async def main():
        ws = await open_client(stack_m.gw, user=7, headers={"Cookie": "csrftoken=s3cret"})
        assert await send_request(ws, json.dumps({"groups": {"jobs": ["status_changed"]}})) \
            == {"error": "xrftoken mismatch"}
        await ws.close()
    run(main())


def test_xrftoken_cookie_is_not_a_csrftoken_cookie(stack_m):
    # only csrftoken counts: a client-set xrftoken cookie proves nothing
    async def main():
        ws = await open_client(stack_m.gw, user=7,
                               headers={"Cookie": "xrftoken=forged; csrftoken=real"})
        assert await send_request(ws, json.dumps({"groups": {"jobs": ["a"]},
                                                  "xrftoken": "forged"})) \
            == {"error": "xrftoken mismatch"}
        errors, reply = await subscribe(ws, {"jobs": ["a"]}, xrftoken="real")
        assert reply["groups_current"] == ["jobs-a"]
        await ws.close()
    run(main())


def test_xrftoken_that_differs_only_in_case_is_refused(stack_m):
    async def main():
        ws = await open_client(stack_m.gw, user=7, headers={"Cookie": "csrftoken=AbC"})
        assert await send_request(ws, json.dumps({"groups": {"jobs": ["a"]}, "xrftoken": "abc"})) \
            == {"error": "xrftoken mismatch"}
        await ws.close()
    run(main())


# ---- object-level policy (the objects claim) --------------------------------

def object_client(stack_m, objects, user=7):
    return open_client(stack_m.gw, user=user, token=jwt_for(user, objects=objects))


def test_object_grant_covers_only_the_listed_ids(stack_m):
    async def main():
        ws = await object_client(stack_m, {"job_events": [42]})
        errors, reply = await subscribe(ws, {"job_events": [42, 43]})
        assert errors == [{"error": "access denied to channel job_events for resource id 43"}]
        assert reply["groups_current"] == ["job_events-42"]
        await ws.close()
    run(main())


def test_object_grant_of_42_does_not_cover_042(stack_m):
    async def main():
        ws = await object_client(stack_m, {"job_events": [42]})
        errors, reply = await subscribe(ws, {"job_events": ["042"]})
        assert len(errors) == 1 and reply["groups_current"] == []
        await ws.close()
    run(main())


def test_object_grant_for_one_channel_does_not_cover_another(stack_m):
    async def main():
        ws = await object_client(stack_m, {"job_events": "*"})
        errors, reply = await subscribe(ws, {"workflow_events": [1], "job_events": [99]})
        assert errors == [{"error": "access denied to channel workflow_events for resource id 1"}]
        assert reply["groups_current"] == ["job_events-99"]
        await ws.close()
    run(main())


@pytest.mark.parametrize("objects", [["job_events"], "job_events", 42],
                         ids=["list", "string", "number"])
def test_objects_claim_that_is_not_an_object_is_403(stack_m, objects):
    assert status(stack_m, jwt_for(7, objects=objects)) == 403


# ---- per-user groups: control-limit_reached_<uid> ------------------------------

@pytest.mark.parametrize("value", ["limit_reached_8", "limit_reached_70", "limit_reached_",
                                   "limit_reached_07", "_7"],
                         ids=["other-user", "prefix-of-other", "no-uid", "leading-zero",
                              "empty-name"])
def test_control_group_not_exactly_own_uid_is_refused(stack_m, value):
    async def main():
        ws = await open_client(stack_m.gw, user=7)
        errors, reply = await subscribe(ws, {"control": [value]})
        assert len(errors) == 1 and "access denied" in errors[0]["error"]
        assert reply["groups_current"] == []
        await ws.close()
    run(main())


def test_control_as_a_non_list_value_is_refused(stack_m):
    async def main():
        ws = await open_client(stack_m.gw, user=7)
        errors, reply = await subscribe(ws, {"control": "limit_reached_7"})
        assert errors == [{"error": "access denied to channel control"}]
        assert reply["groups_current"] == []
        await ws.close()
    run(main())


def test_user_never_receives_another_users_private_events(stack_m):
    async def main():
        a = await open_client(stack_m.gw, user=7)
        b = await open_client(stack_m.gw, user=8)
        _, reply = await subscribe(a, {"control": ["limit_reached_7"]})
        assert reply["groups_current"] == ["control-limit_reached_7"]
        _, reply = await subscribe(b, {"control": ["limit_reached_8"]})
        assert reply["groups_current"] == ["control-limit_reached_8"]
        emitter = stack_m.pika_emitter()
        try:
            # one publisher, one gateway queue: delivered in this order, so
            # A's first message tells whether B's event reached A
            emitter.emit("control-limit_reached_8", '{"for": "user 8"}')
            emitter.emit("control-limit_reached_7", '{"for": "user 7"}')
        finally:
            emitter.close()
        assert await recv_json(b) == {"for": "user 8"}
        assert await recv_json(a) == {"for": "user 7"}
        await a.close()
        await b.close()
    run(main())
