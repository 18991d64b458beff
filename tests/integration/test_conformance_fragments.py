"""RFC 6455 conformance through the echo route, Autobahn categories 5
(fragmentation) and 6 (UTF-8 of text messages): fragments reassembled,
control frames allowed between them, data frames never interleaved, and
text checked as UTF-8 wherever a sequence is cut (fragment or TCP read)."""

import pytest

from rawws import gw  # noqa: F401  (the module's pytest fixture)
from rawws import (assert_fails_with, open_ws, BINARY, CLOSE, CONT, PING, PONG, TEXT,
                   close_payload, frame)


def fragments(opcode, parts):
    """A message as frames: the first with opcode, the rest continuations,
    FIN on the last."""
    out = b""
    for i, part in enumerate(parts):
        out += frame(opcode if i == 0 else CONT, part, fin=i == len(parts) - 1)
    return out


# ---- category 5: fragmentation -------------------------------------------

@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_fragmented_message_is_reassembled(gw, opcode):
    with open_ws(gw) as ws:
        ws.send(fragments(opcode, [b"frag", b"ment", b"ed"]))
        assert ws.recv_message() == (opcode, b"fragmented")


def test_message_of_100_fragments_is_reassembled(gw):
    parts = [bytes([65 + i % 26]) * 10 for i in range(100)]
    with open_ws(gw) as ws:
        ws.send(fragments(TEXT, parts))
        assert ws.recv_message() == (TEXT, b"".join(parts))


def test_empty_fragments_make_an_empty_message(gw):
    with open_ws(gw) as ws:
        ws.send(fragments(TEXT, [b"", b"", b""]))
        assert ws.recv_message() == (TEXT, b"")


def test_fragments_written_one_byte_at_a_time_are_reassembled(gw):
    with open_ws(gw) as ws:
        ws.send(fragments(TEXT, [b"slow", b"ly"]), chunk=1, pause=0.001)
        assert ws.recv_message() == (TEXT, b"slowly")


def test_ping_between_fragments_is_answered_and_the_message_completes(gw):
    with open_ws(gw) as ws:
        ws.send(frame(TEXT, b"one ", fin=False) + frame(PING, b"between")
                + frame(CONT, b"two"))
        f = ws.read_frame()
        assert (f.opcode, f.payload) == (PONG, b"between")
        assert ws.recv_message() == (TEXT, b"one two")


def test_pong_between_fragments_is_ignored(gw):
    with open_ws(gw) as ws:
        ws.send(frame(TEXT, b"one ", fin=False) + frame(PONG, b"unasked")
                + frame(CONT, b"two"))
        assert ws.recv_message() == (TEXT, b"one two")


def test_fragments_and_ping_one_byte_at_a_time(gw):
    data = (frame(TEXT, b"a", fin=False) + frame(PING, b"p") + frame(CONT, b"b", fin=False)
            + frame(PING, b"q") + frame(CONT, b"c"))
    with open_ws(gw) as ws:
        ws.send(data, chunk=1, pause=0.001)
        assert [ws.read_frame().payload for _ in range(2)] == [b"p", b"q"]
        assert ws.recv_message() == (TEXT, b"abc")


def test_continuation_without_a_started_message_is_a_protocol_error(gw):
    with open_ws(gw) as ws:
        ws.send_frame(CONT, b"orphan", fin=False)
        assert_fails_with(ws, 1002)


def test_final_continuation_without_a_started_message_is_a_protocol_error(gw):
    with open_ws(gw) as ws:
        ws.send(frame(TEXT, b"complete") + frame(CONT, b"orphan"))
        assert_fails_with(ws, 1002)


@pytest.mark.parametrize("second", [TEXT, BINARY])
def test_new_data_message_inside_a_fragmented_one_is_a_protocol_error(gw, second):
    with open_ws(gw) as ws:
        ws.send(frame(TEXT, b"started", fin=False) + frame(second, b"interleaved"))
        assert_fails_with(ws, 1002)


def test_close_between_fragments_ends_the_connection_cleanly(gw):
    with open_ws(gw) as ws:
        ws.send(frame(TEXT, b"never finished", fin=False) + frame(CLOSE, close_payload(1000)))
        assert ws.expect_close() == (1000, "")
        assert ws.at_eof()


# ---- category 6: UTF-8 ---------------------------------------------------

VALID = [
    "κόσμε".encode(),                          # 2-byte characters
    "Hello-µ@ßöäüàá-UTF-8!!".encode(),
    b"\xe2\x82\xac",                            # U+20AC, 3 bytes
    b"\xf0\x9f\x98\x80",                        # U+1F600, 4 bytes
    b"\xed\x9f\xbf", b"\xee\x80\x80",          # U+D7FF and U+E000, around the surrogates
    b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf",      # U+FFFF, U+10FFFF
]

INVALID = [
    b"\xff",                                    # never valid
    b"\x80",                                    # a lone continuation byte
    b"\xc0\xaf",                                # overlong '/'
    b"\xe0\x80\xaf",                            # overlong, 3 bytes
    b"\xed\xa0\x80",                            # U+D800, a surrogate
    b"\xf4\x90\x80\x80",                        # above U+10FFFF
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",  # Autobahn 6.3.1
    b"abc\xce",                                 # cut short at the end
]


@pytest.mark.parametrize("text", VALID, ids=lambda b: b.hex())
def test_valid_utf8_text_is_echoed(gw, text):
    with open_ws(gw) as ws:
        assert ws.echo(TEXT, text) == (TEXT, text)


@pytest.mark.parametrize("text", INVALID, ids=lambda b: b.hex()[:24])
def test_invalid_utf8_text_is_closed_with_1007(gw, text):
    with open_ws(gw) as ws:
        ws.send_frame(TEXT, text)
        assert_fails_with(ws, 1007)


def test_invalid_utf8_in_a_binary_message_is_fine(gw):
    with open_ws(gw) as ws:
        assert ws.echo(BINARY, b"\xff\xc0\xaf") == (BINARY, b"\xff\xc0\xaf")


def test_valid_character_split_across_fragments_is_echoed(gw):
    text = "κόσμε".encode()
    with open_ws(gw) as ws:
        ws.send(fragments(TEXT, [text[:1], text[1:4], text[4:]]))  # cuts inside characters
        assert ws.recv_message() == (TEXT, text)


def test_four_byte_character_one_byte_per_fragment_is_echoed(gw):
    text = b"\xf0\x9f\x98\x80"
    with open_ws(gw) as ws:
        ws.send(fragments(TEXT, [text[i:i + 1] for i in range(4)]))
        assert ws.recv_message() == (TEXT, text)


def test_invalid_sequence_split_across_fragments_is_closed_with_1007(gw):
    # U+D800 (a surrogate) cut in two: each fragment alone could be valid
    with open_ws(gw) as ws:
        ws.send(fragments(TEXT, [b"ok \xed", b"\xa0\x80 then more"]))
        assert_fails_with(ws, 1007)


def test_invalid_first_fragment_is_closed_before_the_message_ends(gw):
    # fail fast: the rest of the message never comes
    with open_ws(gw) as ws:
        ws.send_frame(TEXT, b"bad \xff", fin=False)
        assert_fails_with(ws, 1007)


def test_message_ending_inside_a_character_is_closed_with_1007(gw):
    with open_ws(gw) as ws:
        ws.send(fragments(TEXT, [b"ok", b"\xe2\x82"]))
        assert_fails_with(ws, 1007)


def test_valid_character_split_across_tcp_reads_is_echoed(gw):
    text = "€uro ok".encode()
    data = frame(TEXT, text)
    cut = len(data) - len(text) + 1  # after the header and the first byte of '€'
    with open_ws(gw) as ws:
        ws.send(data[:cut])
        ws.send(data[cut:], chunk=1, pause=0.005)
        assert ws.recv_message() == (TEXT, text)


def test_invalid_sequence_split_across_tcp_reads_is_closed_with_1007(gw):
    text = b"fine so far \xed\xa0\x80"
    data = frame(TEXT, text)
    with open_ws(gw) as ws:
        ws.send(data, chunk=1, pause=0.002)
        assert_fails_with(ws, 1007)


# Autobahn 6.7.1: the NUL crosses the broker both ways as \u0000 (proto/chan_json.h).
def test_text_with_u0000_is_echoed_unchanged(gw):
    with open_ws(gw) as ws:
        assert ws.echo(TEXT, b"a\x00b") == (TEXT, b"a\x00b")
