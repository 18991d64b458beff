"""`make run` (deploy/dev/run.sh) as a newcomer uses it: the stack comes up
with two workers (WORKERS=2, foreman's -m all=1,worker=2), stays up after
it printed its URLs, a client subscribes and receives what the printed emit
line sends, the echo route answers, and Ctrl-C stops every process it
started, the broker included."""

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import websockets

from conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _descendants(pid):
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children = {}
    pairs = [tuple(map(int, l.split())) for l in out.strip().splitlines()]
    for p, pp in pairs:
        children.setdefault(pp, []).append(p)
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


@pytest.fixture(scope="module")
def dev_stack(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("make-run")
    if os.environ.get("WSGW_BUILD", str(ROOT / "build")) != str(ROOT / "build"):
        pytest.skip("make run uses the normal build; covered by the build/ pass")
    log = open(tmp_path / "run.log", "w+")
    env = {**os.environ, "WSGW_DEV_PORT": str(free_port()), "WORKERS": "2"}
    proc = subprocess.Popen(["deploy/dev/run.sh"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    text = lambda: (tmp_path / "run.log").read_text(errors="replace")
    try:
        wait_until(lambda: "echo route" in text() or proc.poll() is not None, 180,
                   "make run to print its URLs")
        assert proc.poll() is None, text()
        yield proc, text
    finally:
        kids = _descendants(proc.pid)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("make run did not stop within 30 s of Ctrl-C:\n" + text())
        wait_until(lambda: not any(Path(f"/proc/{k}").exists() for k in kids), 20,
                   "every process make run started to exit")
        log.close()


def test_make_run_serves_until_ctrl_c(dev_stack):
    proc, text = dev_stack
    time.sleep(2)  # the announcer has exited by now: the stack must still be up
    assert proc.poll() is None, "the stack stopped after printing its URLs:\n" + text()
    out = text()
    token = r"[A-Za-z0-9_.-]+"  # a JWT; the printed lines may quote it
    url = re.search(r"(ws://[0-9.:]+/websocket/\?token=" + token + ")", out).group(1)
    echo = re.search(r"(ws://[0-9.:]+/websocket/echo\?token=" + token + ")", out).group(1)
    emit = re.search(r"(build/chanctl emit jobs-status_changed .*)", out).group(1)

    async def main():
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["accept"] is True
            await ws.send(json.dumps({"groups": {"jobs": ["status_changed"]}}))
            assert "groups_current" in json.loads(await ws.recv())
            subprocess.run(emit, shell=True, cwd=ROOT, check=True, timeout=30)
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"status": "running"}
        async with websockets.connect(echo, max_size=None) as ws:
            await ws.send("écho")
            assert await asyncio.wait_for(ws.recv(), 10) == "écho"
    asyncio.run(asyncio.wait_for(main(), 60))


def test_make_run_scales_workers(dev_stack):
    def consumers():
        out = subprocess.run(["tests/lib/broker.sh", "ctl", ".run/broker", "list_queues",
                              "name", "consumers"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60).stdout
        m = re.search(r"^websocket\.connect\s+(\d+)$", out, re.M)
        return int(m.group(1)) if m else 0
    wait_until(lambda: consumers() == 2, 30, "two workers consuming websocket.connect")
