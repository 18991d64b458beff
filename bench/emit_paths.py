#!/usr/bin/env python3
"""emit_paths.py - events/s through each way a backend emits (`make bench-emit`;
docs/BENCHMARKS.md "Emit paths").

Rows, each the median of BENCH_RUNS (3) runs, 200-byte JSON events, every one
confirmed by the broker before it counts:

  chanctl emit --stdin     20,000 lines into one chanctl process (publish,
                           up to 8,192 unconfirmed, flush at the end)
  Python, one by one       Emitter.emit: publish, wait for the confirm, next
  Python, emit_many x100   bench/emit_python.py's batch100 mode
  HTTP, one per request    POST /emit?group=G on keep-alive connections
                           (wrk, 1 and 8 connections, 5 s)
  HTTP, batches of 100     POST /emit/batch with 100 events (wrk, 1 and 8)

The stack as deployed: a private RabbitMQ node, gatewayd (history on: the
stream takes every event, as in production), workerd and emitd, all pinned to
CPU 0; the emitters (chanctl, Python, wrk) run on CPU 1. The group has no
subscriber: what is measured is the emit path into the broker and its
confirm, which is what an emitter waits for.

wrk is Debian's (installed here when missing: benchmarks only). A wrk run
with any answer other than 200 fails the benchmark.

Owns: the private node, the daemons it starts (by pid), a temporary folder
(kept when something failed). Environment: WSGW_BUILD (build), BENCH_RUNS
(3), BENCH_NO_DOC=1 (print only).
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import free_port, pinned, put_block, stop_all  # noqa: E402
BUILD = Path(os.environ.get("WSGW_BUILD", "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
GROUP = "bench-emit"
SIZE = 200
CHANCTL_EVENTS = 20000
PY_EVENTS = 5000
WRK_SECONDS = 5
BEGIN = "<!-- bench-emit:begin (written by bench/emit_paths.py; edits here are lost) -->"
END = "<!-- bench-emit:end -->"




def event(seq):
    head = f'{{"seq":{seq},"stdout":"'
    return head + "x" * (SIZE - len(head) - 2) + '"}'


def ensure_wrk():
    if shutil.which("wrk"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"],
                   check=True, env=env, stdout=subprocess.DEVNULL)


class Stack:
    """broker + gatewayd + workerd + emitd, on CPU 0."""

    def __init__(self, state):
        self.state, self.procs = state, []
        self.broker = state / "broker"
        subprocess.run(pinned([str(ROOT / "tests/lib/broker.sh"), "start", str(self.broker)], 0),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = dict(line.split("=", 1) for line in (self.broker / "env").read_text().split()
                   if "=" in line)
        self.amqp_url = f"amqp://guest:guest@127.0.0.1:{env['AMQP_PORT'].strip(chr(34))}/"
        self.key = os.urandom(24).hex()
        keys = state / "emit.keys"
        keys.write_text(f"bench {self.key}\n")
        keys.chmod(0o600)
        log = open(state / "daemons.log", "ab")
        gw_port, self.emit_port = free_port(), free_port()
        common = [f"--amqp.url={self.amqp_url}", "--log.level=warn"]
        for argv in ([str(BUILD / "gatewayd"), *common, f"--gateway.listen=127.0.0.1:{gw_port}",
                      "--gateway.metrics_listen=", "--gateway.processes=1"],
                     [str(BUILD / "workerd"), *common, "--auth.secret=" + "s" * 32],
                     [str(BUILD / "emitd"), *common, f"--emit.listen=127.0.0.1:{self.emit_port}",
                      f"--emit.key_file={keys}"]):
            self.procs.append(subprocess.Popen(pinned(argv, 0), stdout=log, stderr=log))
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.emit_port), 0.5) as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        time.sleep(1)  # the gateway's stream consumer, the worker's queues
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("emitd was not ready (on the broker) within 30 s")

    def stop(self):
        stop_all(self.procs)
        subprocess.run([str(ROOT / "tests/lib/broker.sh"), "stop", str(self.broker)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def chanctl_rate(st):
    lines = "".join(event(i) + "\n" for i in range(CHANCTL_EVENTS)).encode()
    t0 = time.monotonic()
    out = subprocess.run(pinned([str(BUILD / "chanctl"), "emit", "--stdin", GROUP,
                                 f"--amqp.url={st.amqp_url}"], 1),
                         input=lines, capture_output=True, timeout=300)
    seconds = time.monotonic() - t0
    if out.returncode != 0:
        raise RuntimeError(f"chanctl emit exited {out.returncode}: {out.stderr.decode()}")
    return {"events_s": CHANCTL_EVENTS / seconds}


def python_rates(st):
    out = subprocess.run(pinned([sys.executable, str(ROOT / "bench/emit_python.py"), st.amqp_url,
                                 "--count", str(PY_EVENTS), "--size", str(SIZE), "--group", GROUP,
                                 "--runs", "1", "--modes", "one,batch100"], 1),
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"emit_python.py exited {out.returncode}: {out.stdout}{out.stderr}")
    rates = {m: float(r) for m, r in re.findall(r"^PY_EMIT mode=(\S+) .*rate=([\d.]+)",
                                                 out.stdout, re.M)}
    return {"one": {"events_s": rates["one"]}, "batch100": {"events_s": rates["batch100"]}}


def wrk(st, path, body, conns):
    script = st.state / "wrk.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        f'wrk.headers["Authorization"] = "Bearer {st.key}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n')
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{WRK_SECONDS}s", "--latency", "-s", str(script),
            f"http://127.0.0.1:{st.emit_port}{path}"]
    out = subprocess.run(pinned(argv, 1), capture_output=True, text=True,
                         timeout=WRK_SECONDS + 60)
    text = out.stdout + out.stderr
    if out.returncode != 0 or "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError(f"wrk: not every answer was 200:\n{text}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\b", text, re.M)
    scale = {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    return {"requests_s": rps, "p99_ms": float(p99.group(1)) * scale}


def http_rates(st):
    single = event(0)
    batch = json.dumps({"events": [{"group": GROUP, "event": json.loads(event(i))}
                                   for i in range(100)]})
    rows = {}
    for conns in (1, 8):
        r = wrk(st, f"/emit?group={GROUP}", single, conns)
        rows[f"single{conns}"] = {"events_s": r["requests_s"], "p99_ms": r["p99_ms"]}
        r = wrk(st, "/emit/batch", batch, conns)
        rows[f"batch{conns}"] = {"events_s": 100 * r["requests_s"], "p99_ms": r["p99_ms"]}
    return rows


def measure(state):
    runs = []
    for i in range(RUNS):
        st = Stack(state / f"run{i}")
        try:
            fig = {"chanctl": chanctl_rate(st)}
            py = python_rates(st)
            fig["py_one"], fig["py_batch100"] = py["one"], py["batch100"]
            for k, v in http_rates(st).items():
                fig[f"http_{k}"] = v
            runs.append(fig)
            print(f"emit_paths: run {i + 1}: " + ", ".join(
                f"{k} {v['events_s']:,.0f}/s" for k, v in fig.items()), flush=True)
        finally:
            st.stop()
    med = {}
    for k in runs[0]:
        med[k] = {f: statistics.median(r[k][f] for r in runs) for f in runs[0][k]}
    return med


ROWS = [
    ("chanctl", "`chanctl emit --stdin` (20,000 lines, one process)", "-"),
    ("py_one", "Python `Emitter.emit`, one by one (confirm each)", "-"),
    ("py_batch100", "Python `Emitter.emit_many`, batches of 100", "-"),
    ("http_single1", "HTTP `POST /emit`, one event per request, 1 connection", "p99"),
    ("http_single8", "HTTP `POST /emit`, one event per request, 8 connections", "p99"),
    ("http_batch1", "HTTP `POST /emit/batch`, 100 events per request, 1 connection", "p99"),
    ("http_batch8", "HTTP `POST /emit/batch`, 100 events per request, 8 connections", "p99"),
]


def report(med):
    lines = [BEGIN, "",
             f"Median of {RUNS} runs; {SIZE}-byte events; each counted once the broker "
             "confirmed it. Broker, gatewayd (history on), workerd and emitd on CPU 0, the "
             "emitter on CPU 1 (`make bench-emit`, bench/emit_paths.py).", "",
             "| emit path | events/s | request p99 |", "|---|---|---|"]
    for key, name, lat in ROWS:
        r = med[key]
        p99 = f"{r['p99_ms']:.2f} ms" if lat == "p99" else "-"
        lines.append(f"| {name} | {r['events_s']:,.0f} | {p99} |")
    lines += ["", END]
    return "\n".join(lines)


def write_doc(text):
    put_block(text, BEGIN, END, "Emit paths")


def main():
    ensure_wrk()
    state = Path(tempfile.mkdtemp(prefix="wsgw-bench-emit."))
    ok = False
    try:
        text = report(measure(state))
        print(text)
        if not os.environ.get("BENCH_NO_DOC"):
            write_doc(text)
            print("bench-emit: wrote docs/BENCHMARKS.md")
        ok = True
    finally:
        if ok:
            shutil.rmtree(state, ignore_errors=True)
        else:
            print(f"bench-emit: logs kept in {state}", file=sys.stderr)


if __name__ == "__main__":
    main()
