"""cdp.py - headless Chromium driven over the DevTools protocol, from
Python with the websockets package: no npm, no webdriver.

Owns: starting Debian's chromium with a private profile in a temporary
folder and a DevTools port chosen by the browser (read from its
DevToolsActivePort file), one page session, and the few calls the browser
tests need: navigate, evaluate, wait for a condition, set a cookie, take a
screenshot. The browser is stopped by pid.
"""

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import websockets

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path():
    for p in CHROMIUM_CANDIDATES:
        if os.access(p, os.X_OK):
            return p
    return shutil.which("chromium")


class CdpError(RuntimeError):
    pass


class Browser:
    """One headless Chromium process: Browser.launch(workdir), then stop()."""

    def __init__(self, proc, port, profile, log):
        self.proc = proc
        self.port = port
        self.profile = profile
        self._log = log

    @classmethod
    def launch(cls, workdir, timeout=20):
        exe = chromium_path()
        if not exe:
            raise CdpError("chromium is not installed (tests/lib/deps.sh installs it)")
        workdir = Path(workdir)
        profile = workdir / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        log = open(workdir / "chromium.log", "wb")
        argv = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage",
                "--mute-audio", "--password-store=basic", "--use-mock-keychain",
                "--window-size=1200,800", f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                "about:blank"]
        # Its own session: a stray child (zygote, renderer) goes with it.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while True:
            if port_file.exists():
                lines = port_file.read_text().split("\n")
                if lines and lines[0].strip().isdigit():
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                b = cls(proc, 0, profile, log)
                b.stop()
                raise CdpError("chromium did not open its DevTools port:\n"
                               + (workdir / "chromium.log").read_text(errors="replace")[-3000:])
            time.sleep(0.05)
        return cls(proc, int(lines[0]), profile, log)

    def page_ws_url(self):
        """The DevTools websocket of the first page (the about:blank tab)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as r:
            targets = json.load(r)
        for t in targets:
            if t.get("type") == "page":
                return t["webSocketDebuggerUrl"]
        raise CdpError(f"no page target in {targets}")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


class Page:
    """A DevTools session on one page: commands and the events they cause."""

    def __init__(self, ws):
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending = {}
        self.events = []  # (method, params) in arrival order
        self.console = []  # console messages and exceptions, for failure reports
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, browser):
        ws = await websockets.connect(browser.page_ws_url(), max_size=None, ping_interval=None)
        page = cls(ws)
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send("Network.enable")
        return page

    async def _read(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg:
                    fut = self._pending.pop(msg["id"], None)
                    if fut and not fut.done():
                        fut.set_result(msg)
                else:
                    self.events.append((msg.get("method"), msg.get("params", {})))
                    if msg.get("method") == "Runtime.consoleAPICalled":
                        args = msg["params"].get("args", [])
                        self.console.append(" ".join(str(a.get("value", a.get("description")))
                                                     for a in args))
                    elif msg.get("method") == "Runtime.exceptionThrown":
                        d = msg["params"]["exceptionDetails"]
                        self.console.append("exception: " + d.get("exception", {}).get(
                            "description", d.get("text", "")))
        except websockets.ConnectionClosed:
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(CdpError("DevTools connection closed"))

    async def send(self, method, timeout=15, **params):
        i = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[i] = fut
        await self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        msg = await asyncio.wait_for(fut, timeout)
        if "error" in msg:
            raise CdpError(f"{method}: {msg['error']}")
        return msg.get("result", {})

    async def navigate(self, url, timeout=15):
        start = len(self.events)
        res = await self.send("Page.navigate", url=url)
        if res.get("errorText"):
            raise CdpError(f"navigate {url}: {res['errorText']}")
        deadline = time.monotonic() + timeout
        while not any(m == "Page.loadEventFired" for m, _ in self.events[start:]):
            if time.monotonic() > deadline:
                raise CdpError(f"{url} did not finish loading within {timeout}s")
            await asyncio.sleep(0.05)

    async def eval(self, expression, timeout=15):
        """The value of a JavaScript expression (JSON-serialisable); a
        promise is awaited, for at most timeout seconds."""
        res = await self.send("Runtime.evaluate", timeout=timeout, expression=expression,
                              returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise CdpError(f"{expression!r} threw: "
                           f"{d.get('exception', {}).get('description', d.get('text'))}")
        return res["result"].get("value")

    async def wait_for(self, expression, timeout=15, what=None):
        """Polls until the expression is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CdpError(f"timed out after {timeout}s waiting for {what or expression}; "
                               f"console: {self.console[-10:]}")
            await asyncio.sleep(0.05)

    async def screenshot(self, path):
        res = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        data = base64.b64decode(res["data"])
        Path(path).write_bytes(data)
        return data

    async def close(self):
        await self.ws.close()
        self._reader.cancel()
        try:
            await self._reader
        except (asyncio.CancelledError, Exception):
            pass
