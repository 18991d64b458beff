"""RFC 6455 conformance through the echo route (gateway -> worker ->
gateway), Autobahn categories 1 (framing), 2 (ping/pong), 3 (reserved
bits) and 4 (opcodes). Every frame is built by rawws; every reply is read
strictly. A protocol error must get close 1002 and then a closed socket, as
a strict server (Python websockets) does."""

import os

import pytest

from rawws import gw  # noqa: F401  (the module's pytest fixture)
from rawws import (assert_fails_with, open_ws, BINARY, CLOSE, CONT, PING, PONG, TEXT,
                   close_payload, frame)


# ---- category 1: framing -------------------------------------------------

@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 128, 65535, 65536, 200000])
def test_text_message_of_each_length_form_is_echoed(gw, length):
    payload = ("é" * (length // 2) + "a" * (length % 2)).encode()  # 2-byte characters
    with open_ws(gw) as ws:
        assert ws.echo(TEXT, payload) == (TEXT, payload)


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_binary_message_of_each_length_form_is_echoed(gw, length):
    payload = os.urandom(length)
    with open_ws(gw) as ws:
        assert ws.echo(BINARY, payload) == (BINARY, payload)


def test_frame_written_one_byte_at_a_time_is_echoed(gw):
    payload = b"one byte per TCP write " * 10  # 230 bytes: a 16-bit length
    with open_ws(gw) as ws:
        ws.send_frame(TEXT, payload, chunk=1, pause=0.001)
        assert ws.recv_message() == (TEXT, payload)


def test_frame_in_the_same_write_as_the_upgrade_request_is_echoed(gw):
    with open_ws(gw, first=frame(TEXT, "sent with the request")) as ws:
        assert ws.recv_message() == (TEXT, b"sent with the request")


def test_ping_and_message_in_the_upgrade_write_are_both_answered(gw):
    with open_ws(gw, first=frame(PING, b"early ping") + frame(BINARY, b"\x00\x01")) as ws:
        # the pong is the gateway's own; the echo takes a trip to a worker
        f = ws.read_frame()
        assert (f.opcode, f.payload) == (PONG, b"early ping")
        assert ws.recv_message() == (BINARY, b"\x00\x01")


def test_several_frames_in_one_write_are_echoed_in_order(gw):
    msgs = [f"message {i}".encode() for i in range(20)]
    with open_ws(gw) as ws:
        ws.send(b"".join(frame(TEXT, m) for m in msgs))
        assert [ws.recv_message()[1] for _ in msgs] == msgs


def test_unmasked_client_frame_is_a_protocol_error(gw):
    with open_ws(gw) as ws:
        ws.send_frame(TEXT, b"not masked", mask=False)
        assert_fails_with(ws, 1002)


@pytest.mark.parametrize("bits", [16, 64])
def test_length_not_in_its_shortest_form_is_a_protocol_error(gw, bits):
    # RFC 6455 5.2: "the minimal number of bytes MUST be used"
    with open_ws(gw) as ws:
        ws.send_frame(TEXT, b"short", length_bits=bits)
        assert_fails_with(ws, 1002)


def test_64_bit_length_with_the_top_bit_set_is_a_protocol_error(gw):
    with open_ws(gw) as ws:
        ws.send(bytes([0x82, 0xFF]) + b"\x80" + b"\x00" * 7 + os.urandom(4))
        assert_fails_with(ws, 1002)


# ---- category 2: ping and pong -------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125)), b"\xff\xfe\x00"])
def test_ping_is_answered_with_a_pong_carrying_its_payload(gw, payload):
    with open_ws(gw) as ws:
        ws.send_frame(PING, payload)
        f = ws.read_frame()
        assert (f.opcode, f.payload) == (PONG, payload)


def test_ping_over_125_bytes_is_a_protocol_error(gw):
    with open_ws(gw) as ws:
        ws.send_frame(PING, b"x" * 126, length_bits=16)
        assert_fails_with(ws, 1002)


def test_fragmented_ping_is_a_protocol_error(gw):
    with open_ws(gw) as ws:
        ws.send_frame(PING, b"part", fin=False)
        assert_fails_with(ws, 1002)


def test_unsolicited_pong_is_ignored(gw):
    with open_ws(gw) as ws:
        ws.send_frame(PONG, b"nobody asked")
        assert ws.echo(TEXT, b"still open") == (TEXT, b"still open")


def test_ten_pings_in_one_write_get_ten_pongs_in_order(gw):
    payloads = [f"ping {i}".encode() for i in range(10)]
    with open_ws(gw) as ws:
        ws.send(b"".join(frame(PING, p) for p in payloads))
        got = []
        for _ in payloads:
            f = ws.read_frame()
            assert f.opcode == PONG
            got.append(f.payload)
        assert got == payloads


def test_ping_written_one_byte_at_a_time_is_answered(gw):
    with open_ws(gw) as ws:
        ws.send_frame(PING, b"slowly", chunk=1, pause=0.001)
        f = ws.read_frame()
        assert (f.opcode, f.payload) == (PONG, b"slowly")


# ---- category 3: reserved bits ------------------------------------------

@pytest.mark.parametrize("rsv", range(1, 8))
def test_reserved_bits_on_a_text_frame_are_a_protocol_error(gw, rsv):
    with open_ws(gw) as ws:
        ws.send_frame(TEXT, b"rsv", rsv=rsv)
        assert_fails_with(ws, 1002)


@pytest.mark.parametrize("opcode", [BINARY, PING, CLOSE])
def test_reserved_bit_on_other_frames_is_a_protocol_error(gw, opcode):
    payload = close_payload(1000) if opcode == CLOSE else b"x"
    with open_ws(gw) as ws:
        ws.send_frame(opcode, payload, rsv=4)
        assert_fails_with(ws, 1002)


def test_reserved_bit_after_a_valid_message_is_a_protocol_error(gw):
    # the valid message may or may not be echoed first (Autobahn: NON-STRICT)
    with open_ws(gw) as ws:
        ws.send(frame(TEXT, b"fine") + frame(TEXT, b"not fine", rsv=2))
        assert_fails_with(ws, 1002)


# ---- category 4: opcodes -------------------------------------------------

@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_is_a_protocol_error(gw, opcode):
    with open_ws(gw) as ws:
        ws.send_frame(opcode, b"reserved")
        assert_fails_with(ws, 1002)


def test_reserved_opcode_after_a_valid_message_is_a_protocol_error(gw):
    with open_ws(gw) as ws:
        ws.send(frame(TEXT, b"fine") + frame(5, b"") + frame(PING, b"never answered"))
        f = ws.read_frame()
        while f.opcode == TEXT:
            f = ws.read_frame()
        assert f.opcode == CLOSE and f.close_code()[0] == 1002
        assert ws.finish_close()


def test_continuation_frame_opcode_alone_is_a_protocol_error(gw):
    with open_ws(gw) as ws:
        ws.send_frame(CONT, b"no message started")
        assert_fails_with(ws, 1002)
