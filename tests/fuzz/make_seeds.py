#!/usr/bin/python3
"""make_seeds.py - writes the seed corpora of the fuzz targets into
tests/fuzz/corpus/<target>/ (committed; rerun after changing a target's
input layout). Regression inputs (crash-*) in those folders are kept.

Owns: the realistic inputs each target starts from: upgrade requests,
client frames (masked, fragmented, interleaved control frames, bad ones),
subscription requests, tokens minted by `chanctl token` (token_mint),
replies and channel messages as docs/PROTOCOL.md shows them.

Usage: tests/fuzz/make_seeds.py [CHANCTL]   (default: build/chanctl)
"""

import base64
import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"
CHANCTL = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "build" / "chanctl")
# fuzz_token.c's secrets.
KEY_NOW = "fuzz-secret-current-0123456789ab"
KEY_OLD = "fuzz-secret-previous-0123456789ab"


def write(target, items):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("seed-*"):
        f.unlink()
    for data in items:
        if isinstance(data, str):
            data = data.encode()
        name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
        (d / name).write_bytes(data)
    print(f"{target}: {len(items)} seeds")


# ---------------------------------------------------------------- frames

def frame(opcode, payload=b"", fin=True, mask=b"\x37\xfa\x21\x3d", rsv=0):
    """A client frame (masked unless mask is None)."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask is None:
        return head + payload
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def close(code=None, reason=b""):
    return frame(8, b"" if code is None else struct.pack(">H", code) + reason)


SUB = json.dumps({"groups": {"jobs": ["status_changed", "summary"], "job_events": [42],
                             "control": ["limit_reached_7"]}, "xrftoken": "abc"})

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade(path="/websocket/?token=eyJhbGciOiJIUzI1NiJ9.e30.c2ln", extra="",
            method="GET", version="13", key=KEY):
    return (f"{method} {path} HTTP/1.1\r\nHost: localhost:8051\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n"
            f"{extra}\r\n").encode()


def http_seeds():
    # byte 0: split point (x/255 of the stream); byte 1: bit 0 echo,
    # bit 1 smallest limits, bit 2 one byte per read.
    s = []
    s.append(b"\x80\x00" + upgrade())
    s.append(b"\x10\x00" + upgrade(extra="Cookie: csrftoken=abc; token=x\r\n"
                                         "Cookie: other=1\r\nOrigin: http://localhost\r\n"))
    s.append(b"\xf0\x00" + upgrade() + frame(1, SUB))
    s.append(b"\x40\x01" + upgrade(path="/websocket/echo"))
    s.append(b"\x40\x00" + upgrade(path="/websocket"))
    s.append(b"\x40\x00" + upgrade(path="/other"))
    s.append(b"\x40\x00" + upgrade(method="POST"))
    s.append(b"\x40\x00" + upgrade(version="8"))
    s.append(b"\x40\x00" + upgrade(key="short"))
    s.append(b"\x40\x00" + b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    s.append(b"\x40\x00" + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    s.append(b"\x40\x00" + upgrade() + b"GET / HTTP/1.1\r\n\r\ngarbage")
    s.append(b"\x00\x04" + upgrade(extra="Authorization: Bearer eyJ.a.b\r\n"))
    s.append(b"\x40\x02" + upgrade(extra="".join(f"X-H{i}: {i}\r\n" for i in range(8))))
    s.append(b"\x40\x02" + upgrade(extra="X-Long: " + "a" * 600 + "\r\n"))
    s.append(b"\x40\x00" + upgrade(extra="Connection: keep-alive, Upgrade\r\n"))
    s.append(b"\x40\x00" + b"GET /websocket/ HTTP/1.0\r\nUpgrade: websocket\r\n\r\n")
    return s


def ws_seeds():
    # byte 0: bit 0 max_message 64, bit 1 close 1001 after, bit 2 ping;
    # byte 1: n read sizes (n % 8), then n sizes, then the stream.
    def inp(flags, sizes, stream):
        return bytes([flags, len(sizes)]) + bytes(sizes) + stream
    euro = "€".encode()
    s = []
    s.append(inp(0, [], frame(1, "hello")))
    s.append(inp(0, [7, 3], frame(1, SUB) + frame(1, '{"groups": {}}')))
    s.append(inp(0, [1], frame(1, "one byte at a time") + close(1000, b"bye")))
    s.append(inp(4, [5], frame(1, "frag", fin=False) + frame(9, "ping!") +
                 frame(0, "ment", fin=False) + frame(0, "ed")))
    s.append(inp(0, [], frame(1, euro[:2], fin=False) + frame(0, euro[2:])))
    s.append(inp(0, [], frame(2, bytes(range(256)))))
    s.append(inp(0, [], frame(1, b"\xc3\x28")))               # invalid UTF-8: 1007
    s.append(inp(0, [], frame(1, b"\xed\xa0\x80")))           # surrogate
    s.append(inp(0, [], frame(1, "x" * 300)))                 # 16-bit length
    s.append(inp(1, [], frame(1, "y" * 100)))                 # over 64: 1009
    s.append(inp(1, [], frame(2, b"z" * 40, fin=False) + frame(0, b"z" * 40)))
    s.append(inp(0, [], frame(1, "unmasked", mask=None)))     # 1002
    s.append(inp(0, [], frame(1, "rsv", rsv=4)))              # 1002
    s.append(inp(0, [], frame(3, "reserved opcode")))
    s.append(inp(0, [], frame(9, b"p" * 126)))                # control too long
    s.append(inp(0, [], frame(9, "ping", fin=False)))         # fragmented control
    s.append(inp(0, [], frame(10, "unsolicited pong") + frame(1, "after")))
    s.append(inp(0, [], frame(0, "continuation first")))
    s.append(inp(0, [], frame(1, "a", fin=False) + frame(1, "b")))  # new msg mid-fragment
    s.append(inp(0, [], close(1005)))
    s.append(inp(0, [], close(999)))
    s.append(inp(0, [], close(1000, b"\xff")))
    s.append(inp(0, [], frame(8, b"\x03")))                   # 1-byte close body
    s.append(inp(2, [], frame(1, "then shutdown")))
    s.append(inp(0, [2, 0], frame(1, "x" * 70000)[:40]))      # 64-bit length, cut
    s.append(inp(0, [], frame(1, "") + frame(2, b"")))
    # bit 4: permessage-deflate; RSV1 (4) marks a compressed message
    def deflated(data):
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        return (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
    job = ('{"type": "job_event", "stdout": "' +
           "\\u001b[0;32mok: [host-1]\\u001b[0m\\r\\n" * 40 + '"}').encode()
    s.append(inp(16, [], frame(1, deflated(SUB.encode()), rsv=4)))
    s.append(inp(16, [9], frame(1, deflated(job), rsv=4) + frame(1, job)))
    z = deflated(job)
    s.append(inp(16, [], frame(1, z[:10], fin=False, rsv=4) + frame(9, "p") + frame(0, z[10:])))
    s.append(inp(17, [], frame(1, deflated(b"\x00" * 5000), rsv=4)))  # bomb: 1009
    s.append(inp(16, [], frame(1, b"\xff\xff\xff", rsv=4)))          # not deflate: 1007
    s.append(inp(16, [], frame(1, deflated(b"a\xc3\x28"), rsv=4)))    # bad UTF-8: 1007
    s.append(inp(16, [], frame(1, "a", fin=False) + frame(0, "b", rsv=4)))  # 1002
    s.append(inp(16, [], frame(9, "p", rsv=4)))                          # 1002
    s.append(inp(16, [], frame(2, deflated(bytes(range(256)) * 4), rsv=4)))
    return s


def pmd_seeds():
    return [b"permessage-deflate", b"permessage-deflate; client_max_window_bits",
            b"permessage-deflate; server_max_window_bits=10; client_max_window_bits=12",
            b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            b'x-foo; a="b,c", permessage-deflate; client_max_window_bits="15"',
            b"permessage-deflate; server_max_window_bits=7, permessage-deflate",
            b"permessage-deflate; mystery; ;;==", b'permessage-deflate; a="\\"']


def subscribe_seeds():
    # byte 0: bit 0 csrftoken "abc"; bit 1 max_groups 5; bit 2 wsgw.2.
    reqs = [
        (1, SUB),
        (0, '{"groups": {"jobs": ["status_changed"]}}'),
        (0, '{"groups": {}}'),
        (0, '{"groups": {"job_events": [42, "43", 44], "workflow_events": [1]}}'),
        (0, '{"groups": {"jobs": "x", "schedules": true, "inventories": null,'
            ' "control": [], "job_events": {}}}'),
        (0, '{"groups": {"control": ["limit_reached_7", "limit_reached_8"]}}'),
        (0, '{"groups": {"control": "limit_reached_7"}}'),
        (0, '{"groups": {"nope": ["x"]}}'),
        (0, '{"groups": {"jobs": ["bad-name"]}}'),
        (0, '{"groups": {"jobs": [{"a": 1}]}}'),
        (0, '{"groups": {"job_events": [9007199254740992, -1, 1.5, 1e300]}}'),
        (0, '{"groups": {"jobs": {"a": 1}}}'),
        (0, '{"groups": []}'),
        (0, '{"groups": {"jobs": ["a"]}, "extra\\u0001\\"key": 1}'),
        (1, '{"groups": {"jobs": ["a"]}, "xrftoken": "abd"}'),
        (1, '{"groups": {"jobs": ["a"]}}'),
        (2, '{"groups": {"jobs": ["a", "b", "c", "d", "e", "f"]}}'),
        (0, '{"groups": {"jobs": ["a", "a", "a"]}, "groups": {}}'),
        (0, '[1, 2]'),
        (0, '{"groups": {"jobs": ["a"]}} trailing'),
        (0, 'not json'),
        (0, '{"groups": {"jobs": ["' + "x" * 64 + '", "' + "y" * 65 + '"]}}'),
        # wsgw.2: positions (docs/PROTOCOL.md, "Positions").
        (5, '{"groups": {"jobs": ["status_changed"], "job_events": [42, 44]}, '
            '"positions": {"jobs-status_changed": "1234-0123456789ab", '
            '"job_events-44": "0-ffffffffffff"}, "xrftoken": "abc"}'),
        (4, '{"groups": {"schedules": 1}, "positions": {}}'),
        (4, '{"groups": {"jobs": ["a"]}, "positions": {"jobs-a": "1-000000000000", '
            '"jobs-a": "2-000000000000"}}'),
        (4, '{"groups": {"jobs": ["a"]}, "positions": []}'),
        (4, '{"groups": {"jobs": ["a"]}, "positions": {"jobs-b": "1-000000000000"}}'),
        (4, '{"groups": {"jobs": ["a"]}, "positions": {"jobs-a": "01-000000000000"}}'),
        (4, '{"groups": {"jobs": ["a"]}, "positions": {"jobs-a": 1}}'),
        (4, '{"groups": {"jobs": ["a"]}, '
            '"positions": {"jobs-a": "9223372036854775808-000000000000"}}'),
        (0, '{"groups": {"jobs": ["a"]}, "positions": {"jobs-a": "1-000000000000"}}'),
    ]
    return [bytes([f]) + r.encode() for f, r in reqs]


def chanctl_token(user, secret, *extra):
    out = subprocess.run([CHANCTL, "token", "--user", str(user), f"--auth.secret={secret}",
                          *extra], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def token_seeds():
    # byte 0 % 3: 0 token as is; 1 "HEADER\xffCLAIMS" signed by the target;
    # 2 extra claims for token_mint.
    s = []
    # Tokens expire in real time; the target's clock is fixed in 2023, so
    # a long TTL from now keeps them valid there forever.
    for user, key, extra in [(7, KEY_NOW, []), (8, KEY_OLD, []),
                             (9, KEY_NOW, ["--objects", '{"job_events": [42, "43"], "jobs": "*"}']),
                             (10, "some-other-secret-0123456789abcdef", [])]:
        s.append(b"\x00" + chanctl_token(user, key, *extra).encode())
    hdr = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    for claims in [{"sub": "7", "exp": 1800000000},
                   {"sub": 7, "exp": 1800000000.5, "nbf": 1600000000},
                   {"sub": "7", "exp": 1700000010},                 # within leeway
                   {"sub": "7", "exp": 1600000000},                 # expired
                   {"sub": "07", "exp": 1800000000},
                   {"sub": "7", "exp": 1800000000, "nbf": 1800000000},
                   {"sub": "7", "exp": 1800000000, "objects": {"job_events": [1]}},
                   {"sub": "7", "exp": 1800000000, "objects": [1]},
                   {"sub": "7"}]:
        s.append(b"\x01" + hdr + b"\xff" + json.dumps(claims).encode())
    for h in [{"alg": "none"}, {"alg": "RS256", "typ": "JWT"}, {"alg": "HS256", "crit": ["x"]},
              {"alg": "HS256", "typ": "JOSE"}, {"alg": "HS256"}]:
        s.append(b"\x01" + json.dumps(h).encode() + b"\xff" +
                 json.dumps({"sub": "7", "exp": 1800000000}).encode())
    none = (base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=") + b"." +
            base64.urlsafe_b64encode(b'{"sub":"7","exp":1800000000}').rstrip(b"=") + b".")
    s.append(b"\x00" + none)
    s.append(b"\x00a.b.c")
    s.append(b"\x00..")
    for extra in ['{"objects": {"job_events": [42]}}', '{"nbf": 1800000000}',
                  '{"sub": "1", "exp": 1, "objects": "x"}', "{}", "[]"]:
        s.append(b"\x02" + extra.encode())
    return s


CHANNEL = "websocket.send.amq.gen-JzTY20BRgKO-HjmUJj0wLg!17"


def batch_seeds():
    """A count byte, then a body: good batches of replies, and the ways a
    batch is refused (count off by one, an empty item, no last newline)."""
    one = json.dumps({"reply_channel": CHANNEL, "order": 1, "text": '{"a": 1}'})
    two = json.dumps({"reply_channel": CHANNEL, "order": 0, "accept": True})
    return [bytes([2]) + (one + "\n" + two + "\n").encode(),
            bytes([3]) + (one + "\n" + two + "\n" + one + "\n").encode(),
            bytes([3]) + (one + "\n" + two + "\n").encode(),
            bytes([2]) + (one + "\n\n" + two + "\n").encode(),
            bytes([2]) + (one + "\n" + two).encode(),
            bytes([0])]


def reply_seeds():
    subreply = json.dumps({"groups_current": ["jobs-status_changed"], "groups_joined": [],
                           "groups_left": []})
    rs = [
        {"reply_channel": CHANNEL, "order": 0, "accept": True,
         "text": '{"accept": true, "user": 7}', "session": {"user": 7, "csrftoken": "abc"}},
        {"reply_channel": CHANNEL, "order": 0, "accept": False},
        {"reply_channel": CHANNEL, "order": 1, "groups": ["jobs-status_changed"],
         "text": ['{"error": "access denied to channel job_events for resource id 42"}', subreply],
         "session": {"user": 7, "csrftoken": "abc"}},
        {"reply_channel": CHANNEL, "order": 2, "bytes": "AAEC/w==", "close": True},
        {"reply_channel": CHANNEL, "order": 3, "close": 4000, "groups": []},
        {"reply_channel": CHANNEL, "order": 3, "close": 1005},
        {"reply_channel": CHANNEL, "order": 9007199254740991, "close": False, "x": [1]},
        {"reply_channel": "websocket.send.q!0", "order": 1, "text": "a\u0000b"},
        {"reply_channel": "websocket.send.q!01", "order": 1},
        {"reply_channel": CHANNEL, "order": 1.5},
        {"reply_channel": CHANNEL, "order": 1, "groups": ["bad name"]},
        {"reply_channel": CHANNEL, "order": 1, "session": {"big": "x" * 4100}},
        {"reply_channel": CHANNEL, "order": 3, "groups": ["job_events-43"],
         "text": ['{"error": "access denied to channel job_events for resource id 42"}'],
         "recheck": 1765100060},
        {"reply_channel": CHANNEL, "order": 3, "recheck": -1},
        # wsgw.2: positions for groups of the reply.
        {"reply_channel": CHANNEL, "order": 1, "groups": ["jobs-status_changed", "job_events-42"],
         "text": [subreply], "positions": {"job_events-42": "1234-0123456789ab",
                                           "jobs-status_changed": "0-ffffffffffff"}},
        {"reply_channel": CHANNEL, "order": 1, "groups": [], "positions": {}},
        {"reply_channel": CHANNEL, "order": 1, "positions": {}},
        {"reply_channel": CHANNEL, "order": 1, "groups": ["a"],
         "positions": {"b": "1-000000000000"}},
        {"reply_channel": CHANNEL, "order": 1, "groups": ["a"],
         "positions": {"a": "9223372036854775808-000000000000"}},
        {"reply_channel": CHANNEL, "order": 1, "groups": ["a"], "positions": ["a"]},
    ]
    out = [json.dumps(r).encode() for r in rs]
    out.append(json.dumps(rs[0]).encode() + b" {}")
    return out


def channel_seeds():
    connect = {"reply_channel": CHANNEL, "path": "/websocket/", "query_string": "token=eyJ...",
               "headers": [["host", "localhost"], ["cookie", "csrftoken=abc"]],
               "client": ["127.0.0.1", 50312], "server": ["127.0.0.1", 8051], "order": 0}
    receive = {"reply_channel": CHANNEL, "path": "/websocket/", "order": 1,
               "text": SUB, "session": {"user": 7, "csrftoken": "abc"}, "groups": []}
    receive_b = {"reply_channel": CHANNEL, "path": "/websocket/echo", "order": 2,
                 "bytes": "AAEC/w==", "groups": ["jobs-status_changed"]}
    disconnect = {"reply_channel": CHANNEL, "path": "/websocket/", "order": 4, "code": 1000,
                  "session": {"user": 7}, "groups": ["jobs-status_changed"]}
    ms = [(0, connect), (1, receive), (1, receive_b), (2, disconnect),
          (0, {**connect, "client": None, "server": ["::1", 0], "headers": []}),
          (0, {**connect, "client": ["", 5]}),
          (0, {**connect, "headers": [["a"]]}),
          (1, {**receive, "bytes": "AA=="}),
          (1, {**receive, "text": "a\u0000b"}),
          (2, {**disconnect, "code": 999}),
          (0, receive), (2, connect),
          (1, {**receive, "session": {"user": 7, "csrftoken": "abc", "credentials": {
              "cookie": "sessionid=s3cret", "authorization": "Bearer t", "client": "::1"}}}),
          (2, {**disconnect, "session": {"user": 7, "credentials": {"cookie": 5}}}),
          (1, {"reply_channel": CHANNEL, "path": "/websocket/", "order": 5, "recheck": True,
               "session": {"user": 7}, "groups": ["job_events-42"]}),
          (1, {**receive, "recheck": True}), (1, {**receive_b, "recheck": False}),
          # wsgw.2 connections (issue 14); an unknown protocol reads as the old one.
          (1, {**receive, "protocol": "wsgw.2"}), (1, {**receive, "protocol": "wsgw.3"}),
          (1, {**receive, "protocol": 2}), (2, {**disconnect, "protocol": "wsgw.2"})]
    return [bytes([k]) + json.dumps(m).encode() for k, m in ms]


def hook_answer_seeds():
    connect = [{"user": 7, "expires": 1765100000, "grants": {"job_events": [42, "43"]},
                "session": {"name": "alice", "n": 5000000000000001}},
               {"user": "5000000000000001"}, {"user": 9007199254740991, "expires": None},
               {"user": 0}, {"user": "007"}, {"user": 7, "grants": {"j": [1.5]}},
               {"user": 7, "session": "x"}, {"user": 9007199254740993}]
    subscribe = [{"allowed": [42, "43", 0]}, {"allowed": []}, {"allowed": [9007199254740991]},
                 {"allowed": ["042"]}, {"allowed": [1.5]}, {"allowed": 42},
                 {"allowed": [9007199254740993]}]
    out = [bytes([0]) + json.dumps(a).encode() for a in connect]
    out += [bytes([21]) + json.dumps(a).encode() for a in subscribe]
    out += [bytes([0]) + b'{"user": 7} x', bytes([3]) + b'{"allowed": [1, 2, 3]}']
    return out


def emit_batch_seeds():
    """fuzz_emit_batch: byte 0 = switches (bit 0 single, bits 1-3 max_events)."""
    batches = [
        {"events": [{"groups": ["jobs-status_changed", "a:b"], "event": {"x": [1, 2.5e3, None]}},
                    {"group": "c", "event": "s\u00e9"}]},
        {"events": []}, {"events": [{"groups": [], "event": 1}]},
        {"events": [{"groups": ["a", "a"], "event": 1}]},
        {"events": [{"group": "a", "groups": ["b"], "event": 1}]},
        {"events": [{"groups": ["x y"], "event": True}]}, {"evts": 1}, [1],
    ]
    out = [bytes([14]) + json.dumps(b).encode() for b in batches]
    out += [bytes([14]) + b'{"events": [{"group": "a", "event": {"deep": [[[[]]]]}}] }',
            bytes([2]) + b'{"events": [{"group": "a", "event": 1}, {"group": "b", "event": 2}]}',
            bytes([14]) + b'{"events": [{"group": "a", "event": "\xff"}]}',
            bytes([15]) + b'group=jobs-x&group=a%3Ab\n{ "a" : 1 }',
            bytes([15]) + b'group=a&group=a\n{}', bytes([15]) + b'grp=a\n[]',
            bytes([15]) + b'group=%zz\n1', bytes([1]) + b'group=a&group=b\n"x"',
            bytes([15]) + b'group=a\n{"a": tru}']
    return out


def ring_seeds():
    """fuzz_ring: a count of records and their sizes (x256 bytes), then
    nothing (an intact ring), or a position and bytes written over it."""
    return [bytes([5, 1, 2, 3, 4, 5]),
            bytes([40]) + bytes(range(1, 41)),             # wraps the 64 KiB ring
            bytes([3, 0, 80, 1]),                          # one over a quarter
            bytes([4, 2, 2, 2, 2, 0, 0]) + b"\xff" * 48,   # the first header smashed
            bytes([4, 2, 2, 2, 2, 0, 8]) + b"\x08\x00\x00\x00" * 16]


def main():
    write("fuzz_http_upgrade", http_seeds())
    write("fuzz_ws_frames", ws_seeds())
    write("fuzz_pmd", pmd_seeds())
    write("fuzz_subscribe", subscribe_seeds())
    write("fuzz_token", token_seeds())
    write("fuzz_reply", reply_seeds())
    write("fuzz_batch", batch_seeds())
    write("fuzz_channel_msg", channel_seeds())
    write("fuzz_hook_answer", hook_answer_seeds())
    write("fuzz_emit_batch", emit_batch_seeds())
    write("fuzz_ring", ring_seeds())


if __name__ == "__main__":
    os.umask(0o022)
    main()
