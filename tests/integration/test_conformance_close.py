"""RFC 6455 conformance through the echo route, Autobahn categories 7
(closing handshake), 9 (large and many messages, with the limits raised
to 16 MiB; sizes kept small enough for CI) and 10 (fragmented echo).
After every closing handshake the server must close the TCP connection."""

import os

import pytest

from rawws import gw  # noqa: F401  (the module's pytest fixture)
from rawws import (open_ws, BINARY, CLOSE, CONT, PING, PONG, TEXT, close_payload, frame)


# ---- category 7: closing handshake ---------------------------------------

def test_close_is_echoed_with_its_code_and_reason_then_tcp_closes(gw):
    with open_ws(gw) as ws:
        ws.send_frame(CLOSE, close_payload(1000, "bye"))
        assert ws.expect_close() == (1000, "bye")
        assert ws.at_eof(), "the server kept the TCP connection open"


def test_close_without_a_body_is_echoed_without_one(gw):
    with open_ws(gw) as ws:
        ws.send_frame(CLOSE, b"")
        assert ws.expect_close() == (None, "")
        assert ws.at_eof()


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  3000, 3999, 4000, 4999])
def test_valid_close_code_is_echoed(gw, code):
    with open_ws(gw) as ws:
        ws.send_frame(CLOSE, close_payload(code))
        assert ws.expect_close()[0] == code
        assert ws.at_eof()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                                  5000, 65535])
def test_invalid_close_code_is_a_protocol_error(gw, code):
    with open_ws(gw) as ws:
        ws.send_frame(CLOSE, close_payload(code))
        assert ws.expect_close()[0] == 1002
        assert ws.at_eof()


def test_close_with_a_one_byte_body_is_a_protocol_error(gw):
    with open_ws(gw) as ws:
        ws.send_frame(CLOSE, b"\x03")
        assert ws.expect_close()[0] == 1002
        assert ws.at_eof()


def test_close_reason_that_is_not_utf8_is_closed_with_1007(gw):
    with open_ws(gw) as ws:
        ws.send_frame(CLOSE, close_payload(1000, b"\xce\xba\xed\xa0\x80"))
        assert ws.expect_close()[0] == 1007
        assert ws.at_eof()


def test_close_reason_of_123_bytes_is_echoed(gw):
    reason = "r" * 123  # 125 bytes with the code: the largest control payload
    with open_ws(gw) as ws:
        ws.send_frame(CLOSE, close_payload(1000, reason))
        assert ws.expect_close() == (1000, reason)
        assert ws.at_eof()


def test_frames_after_the_close_are_ignored(gw):
    with open_ws(gw) as ws:
        ws.send(frame(CLOSE, close_payload(1000)) + frame(TEXT, b"too late")
                + frame(PING, b"too late"))
        assert ws.expect_close()[0] == 1000  # no echo, no pong before it
        assert ws.at_eof()


def test_close_after_a_message_comes_after_its_echo(gw):
    with open_ws(gw) as ws:
        ws.send(frame(TEXT, b"first"))
        assert ws.recv_message() == (TEXT, b"first")
        ws.send_frame(CLOSE, close_payload(1000))
        assert ws.expect_close()[0] == 1000
        assert ws.at_eof()


def test_server_closes_tcp_after_its_own_close_even_if_never_answered(gw):
    with open_ws(gw) as ws:
        ws.send_frame(TEXT, b"\xff")  # 1007 from the server
        assert ws.expect_close()[0] == 1007
        assert ws.at_eof(timeout=5.0)  # we never send our close


def test_close_written_one_byte_at_a_time_is_echoed(gw):
    with open_ws(gw) as ws:
        ws.send_frame(CLOSE, close_payload(1001, "going"), chunk=1, pause=0.001)
        assert ws.expect_close() == (1001, "going")
        assert ws.at_eof()


def test_close_in_the_same_write_as_the_upgrade_request(gw):
    with open_ws(gw, first=frame(CLOSE, close_payload(1000, "at once"))) as ws:
        assert ws.expect_close() == (1000, "at once")
        assert ws.at_eof()


# ---- category 9: limits raised to 16 MiB (modest sizes for CI) ----------

def test_text_message_over_the_default_1mib_limit_is_echoed(gw):
    text = b"abcdefgh" * (1024 * 128) + b"!"  # 1 MiB + 1
    with open_ws(gw, timeout=60) as ws:
        assert ws.echo(TEXT, text) == (TEXT, text)


def test_binary_message_of_4mib_is_echoed(gw):
    data = os.urandom(4 * 1024 * 1024)
    with open_ws(gw, timeout=60) as ws:
        assert ws.echo(BINARY, data) == (BINARY, data)


def test_4mib_message_in_64kib_fragments_is_echoed(gw):
    chunk = 64 * 1024
    data = os.urandom(4 * 1024 * 1024)
    parts = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    frames = b"".join(frame(BINARY if i == 0 else CONT, p, fin=i == len(parts) - 1)
                      for i, p in enumerate(parts))
    with open_ws(gw, timeout=60) as ws:
        ws.send(frames)
        assert ws.recv_message() == (BINARY, data)


def test_200_small_messages_in_one_write_are_echoed_in_order(gw):
    msgs = [f"{i:04d}".encode() * 16 for i in range(200)]
    with open_ws(gw, timeout=30) as ws:
        ws.send(b"".join(frame(TEXT, m) for m in msgs))
        assert [ws.recv_message()[1] for _ in msgs] == msgs


def test_100_messages_one_at_a_time_are_echoed(gw):
    # a round trip each (Autobahn 9.7/9.8 measure this)
    with open_ws(gw, timeout=30) as ws:
        for i in range(100):
            assert ws.echo(BINARY, bytes([i]) * 64) == (BINARY, bytes([i]) * 64)


# ---- category 10: a message echoed whatever its fragmentation -----------

def test_64kib_text_in_1300_byte_fragments_is_echoed_whole(gw):
    text = b"x" * 65536
    parts = [text[i:i + 1300] for i in range(0, len(text), 1300)]
    frames = b"".join(frame(TEXT if i == 0 else CONT, p, fin=i == len(parts) - 1)
                      for i, p in enumerate(parts))
    with open_ws(gw) as ws:
        ws.send(frames)
        assert ws.recv_message() == (TEXT, text)


def test_pings_between_many_fragments_each_get_their_pong(gw):
    frames = b""
    for i in range(10):
        frames += frame(TEXT if i == 0 else CONT, b"%d" % i, fin=i == 9)
        frames += frame(PING, b"p%d" % i)
    with open_ws(gw) as ws:
        ws.send(frames)
        pongs = [ws.read_frame() for _ in range(10)]
        assert [(f.opcode, f.payload) for f in pongs] == [(PONG, b"p%d" % i) for i in range(10)]
        assert ws.recv_message() == (TEXT, b"0123456789")
