#!/usr/bin/python3
"""deflate_decode.py - how clients' decoders read each codec's messages.

    bench/deflate_decode.py DIR

DIR holds what build/bench-deflate --out DIR wrote: plain.bin (the events)
and one file per codec (the compressed messages as they would go on the
wire, each a 4-byte little-endian length and the bytes). Every message is
fed to four decoders, in order, as a client receiving them one after the
other would:

  zlib-fresh       Python's zlib, a new decompressobj(-15) per message fed the
                   message + 00 00 ff ff (RFC 7692 7.2.2)
  zlib-kept        one decompressobj(-15) for all messages, each fed the
                   message + 00 00 ff ff: a client that keeps its inflater
  websockets-nct   websockets' own permessage-deflate decoder as negotiated
                   with the gateway (server_no_context_takeover: it makes a
                   decoder per message)
  websockets-ct    the same decoder told the server keeps its context (no
                   server_no_context_takeover): one decoder for all messages

and counted ok (exactly the event), wrong (decoded to other bytes) or failed
(the decoder raised). Prints one "DECODE codec=... decoder=... ok= wrong=
failed= first_bad=" line per pair; exit status 0 (the counts are the result).
"""

import os
import struct
import sys
import zlib

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

TAIL = b"\x00\x00\xff\xff"


def read_records(path):
    """The messages of one file, in order."""
    with open(path, "rb") as f:
        data = f.read()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("<I", data, i)
        out.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return out


def zlib_fresh():
    def decode(msg):
        return zlib.decompressobj(-15).decompress(msg + TAIL)
    return decode


def zlib_kept():
    d = zlib.decompressobj(-15)

    def decode(msg):
        return d.decompress(msg + TAIL)
    return decode


def websockets_decoder(server_no_context_takeover):
    ext = PerMessageDeflate(server_no_context_takeover, True, 15, 15)

    def decode(msg):
        frame = ext.decode(Frame(Opcode.TEXT, msg, fin=True, rsv1=True), max_size=1 << 20)
        return frame.data
    return decode


DECODERS = [
    ("zlib-fresh", zlib_fresh),
    ("zlib-kept", zlib_kept),
    ("websockets-nct", lambda: websockets_decoder(True)),
    ("websockets-ct", lambda: websockets_decoder(False)),
]


def run(plain, msgs, make):
    """ok, wrong, failed and the index of the first bad message (-1: none)."""
    decode = make()
    ok = wrong = failed = 0
    first_bad = -1
    for i, (want, msg) in enumerate(zip(plain, msgs)):
        try:
            got = decode(msg)
        except Exception:  # noqa: BLE001 - any raise is a failed message
            failed += 1
            first_bad = i if first_bad < 0 else first_bad
            continue
        if got == want:
            ok += 1
        else:
            wrong += 1
            first_bad = i if first_bad < 0 else first_bad
    return ok, wrong, failed, first_bad


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: deflate_decode.py DIR")
    folder = sys.argv[1]
    plain = read_records(os.path.join(folder, "plain.bin"))
    codecs = sorted(n[:-4] for n in os.listdir(folder) if n.endswith(".bin") and n != "plain.bin")
    for codec in codecs:
        msgs = read_records(os.path.join(folder, codec + ".bin"))
        if len(msgs) != len(plain):
            sys.exit(f"{codec}: {len(msgs)} messages, {len(plain)} events")
        for name, make in DECODERS:
            ok, wrong, failed, first_bad = run(plain, msgs, make)
            print(f"DECODE codec={codec} decoder={name} ok={ok} wrong={wrong} "
                  f"failed={failed} first_bad={first_bad}")


if __name__ == "__main__":
    main()
