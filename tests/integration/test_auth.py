"""Handshake and authentication: who gets the upgrade (docs/PROTOCOL.md,
"Connecting")."""

import time

from conftest import (SECRET, handshake_status, jwt_for, make_jwt, mint_token, open_client,
                      recv_json, connect, run, write_token_file)


def test_valid_token_in_query_is_accepted(stack):
    async def main():
        ws = await open_client(stack.gw, user=7)
        await ws.close()
    run(main())


def test_token_minted_by_chanctl_is_accepted(stack):
    token = mint_token(42)

    async def main():
        async with connect(stack.gw.url("/websocket/", token)) as ws:
            assert await recv_json(ws) == {"accept": True, "user": 42}
    run(main())


def test_path_without_trailing_slash_is_accepted(stack):
    async def main():
        ws = await open_client(stack.gw, user=3, path="/websocket")
        await ws.close()
    run(main())


def test_invalid_token_is_refused_with_403(stack):
    assert run(handshake_status(stack.gw.url(token="not-a-jwt"))) == 403


def test_expired_token_is_refused_with_403(stack):
    token = make_jwt({"sub": "7", "exp": int(time.time()) - 3600})
    assert run(handshake_status(stack.gw.url(token=token))) == 403


def test_missing_token_is_refused_with_403(stack):
    assert run(handshake_status(stack.gw.url())) == 403


def test_token_with_wrong_secret_is_refused_with_403(stack):
    token = jwt_for(7, secret=SECRET + "-not")
    assert run(handshake_status(stack.gw.url(token=token))) == 403


def test_token_with_other_algorithm_is_refused_with_403(stack):
    token = make_jwt({"sub": "7", "exp": int(time.time()) + 600},
                     header={"alg": "none", "typ": "JWT"})
    assert run(handshake_status(stack.gw.url(token=token))) == 403


def test_token_in_cookie_is_accepted(stack):
    # A cookie token needs the page's Origin (the same host here: issue 12)
    async def main():
        headers = {"Cookie": f"sessionid=x; token={jwt_for(11)}; csrftoken=abc",
                   "Origin": f"http://127.0.0.1:{stack.gw.port}"}
        async with connect(stack.gw.url(), headers) as ws:
            assert await recv_json(ws) == {"accept": True, "user": 11}
    run(main())


def test_token_in_bearer_header_is_accepted(stack):
    async def main():
        headers = {"Authorization": f"Bearer {jwt_for(12)}"}
        async with connect(stack.gw.url(), headers) as ws:
            assert await recv_json(ws) == {"accept": True, "user": 12}
    run(main())


def test_dev_static_token_file_is_accepted(cluster, tmp_path):
    token_file = tmp_path / "tokens"
    write_token_file(token_file, {"dev-token-for-user-5": 5})
    cluster.worker(f"--auth.token_file={token_file}")
    gw = cluster.gateway()

    async def main():
        async with connect(gw.url(token="dev-token-for-user-5")) as ws:
            assert await recv_json(ws) == {"accept": True, "user": 5}
        assert await handshake_status(gw.url(token="dev-token-not-listed")) == 403
    run(main())


def test_other_path_is_404(stack):
    assert run(handshake_status(stack.gw.url("/other", jwt_for(7)))) == 404


def test_plain_http_request_gets_an_answer(stack):
    # not an upgrade at all: an HTTP error, not a hang or a dropped socket
    status = stack.gw.http_status("/websocket/")
    assert status is not None and 400 <= status < 500, status
