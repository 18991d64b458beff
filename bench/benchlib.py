"""benchlib.py - what the Python benchmark scripts share (hooks.py,
emit_paths.py; lib.sh is the shell scripts' counterpart).

Owns: a free loopback port, pinning a command to a CPU, stopping what a
script started, and replacing a script's generated block of
docs/BENCHMARKS.md. Must not: start anything or keep state.
"""

import os
import signal
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(argv, cpu):
    """argv under taskset on CPU cpu (as is on a one-CPU machine)."""
    return (["taskset", "-c", str(cpu)] if os.cpu_count() >= 2 else []) + argv


def stop_all(procs):
    """SIGTERM to each process, the last started first; SIGKILL to one that
    has not exited 10 s later."""
    for p in reversed(procs):
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def put_block(text, begin, end, heading):
    """Replaces the lines of docs/BENCHMARKS.md from `begin` to `end` by
    text (which holds both markers); appends "## heading" and text when the
    file has no such block. The rest, written by hand, is kept."""
    doc = DOC.read_text()
    if begin in doc:
        head, rest = doc.split(begin, 1)
        doc = head + text + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip("\n") + f"\n\n## {heading}\n\n" + text + "\n"
    DOC.write_text(doc)
