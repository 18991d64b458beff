"""djangoapp.py - the test application (tests/app: a small Django site
standing in for AWX) as a real server for the integration tests: its views
/wsgw/connect and /wsgw/subscribe are workerd's application hooks
(docs/PROTOCOL.md, "Application hooks").

Owns: one application per test (fixture `django_app`), with its SQLite
database in the test's temporary folder, migrated, with users alice (id 7),
bob (id 8) and admin (id 1, superuser), served by Django's own server
(`manage.py runserver --noreload`: threaded, one thread per connection, so
hook calls run concurrently and a delayed one does not hold up the others;
HTTP/1.1 keep-alive, so a client's connection reuse works, with TCP_NODELAY
set by the app's own runserver command; about 500 hook calls/s on this
machine; nothing to install beyond python3-django, where gunicorn would be
one more package and several processes, whose in-memory test controls
(delay, call log) would each hold their own) on a free 127.0.0.1 port, which
stays the same across stop() and start(). Stopped at the end of the test; its log (one line per
request) is printed when the test failed.

Everything a test does to it goes over real HTTP: login() is a browser's
(GET the form for the csrftoken cookie, POST it with the token), the rest
uses the application's test-support endpoints (/test/..., mounted only with
WSGW_APP_TEST_ENDPOINTS=1).

Usable without pytest too (a benchmark): DjangoApp(folder).start() ... stop().
"""

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "tests" / "app"

# name: (id, password, superuser)
# What the gateway needs for the session cookie to reach the hooks.
GATEWAY_ARGS = ("--gateway.forward_cookies=token,csrftoken,sessionid",)

USERS = {
    "alice": (7, "alice-password", False),
    "bob": (8, "bob-password", False),
    "admin": (1, "admin-password", True),
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppError(Exception):
    """A test-support call that the application did not answer 2xx."""


class DjangoApp:
    """The test application on 127.0.0.1:port.

    app.url(path), app.connect_url, app.subscribe_url, app.port
    app.worker_args(subscribe=True) -> ("--auth.connect_url=...", "--auth.subscribe_url=...")
        (and GATEWAY_ARGS for cluster.gateway: forward the sessionid cookie)
    app.users          {"alice": 7, "bob": 8, "admin": 1}; app.passwords likewise
    app.login(user, password=None) -> {"sessionid": ..., "csrftoken": ...}
    app.logout(cookies)
    app.cookie_header(cookies) -> "sessionid=...; csrftoken=..."
    app.ws_headers(cookies, gw) -> {"Cookie": ..., "Origin": "http://127.0.0.1:GWPORT"}
    app.create_job(name="") -> id;  app.grant(user, job);  app.revoke(user, job)
    app.create_user(name, password, id=None, superuser=False) -> id
    app.create_token(user, ttl=3600) -> key (for Authorization: Bearer KEY)
    app.expire_session(cookies, seconds) -> unix time the session now ends
    app.set_delay(ms);  app.set_hook(hooks=None, delay_ms=0, status=None, body=None)
    app.calls(hook=None) -> the hook requests seen;  app.in_flight_max();  app.reset_calls()
    app.connect_hook(headers, body=None), app.subscribe_hook(headers, user, channel, ids)
        -> (status, parsed JSON or text): call a hook as workerd would
    app.stop();  app.start();  app.alive()
    """

    def __init__(self, workdir, port=None, env=None, template=None):
        """template: a database prepare() made before (copied instead of
        migrating again)."""
        self.dir = Path(workdir)
        self.template = template
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.db = self.dir / "app.sqlite3"
        self.log_path = self.dir / "app.log"
        self.users = {name: uid for name, (uid, _, _) in USERS.items()}
        self.passwords = {name: pw for name, (_, pw, _) in USERS.items()}
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "awxlike.settings",
                    "WSGW_APP_DB": str(self.db), "WSGW_APP_TEST_ENDPOINTS": "1",
                    "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        self.proc = None
        self._log = None
        self._prepared = False

    # ---- process
    def _manage(self, *args):
        proc = subprocess.run([sys.executable, "manage.py", *args], cwd=APP_DIR, env=self.env,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise AppError(f"manage.py {' '.join(args)} exited {proc.returncode}:\n"
                           f"{proc.stdout}{proc.stderr}")
        return proc.stdout

    def prepare(self):
        """Migrates the database and creates the users (once)."""
        if self._prepared:
            return
        if self.template:
            shutil.copyfile(self.template, self.db)
            self._prepared = True
            return
        self._manage("migrate", "--verbosity", "0")
        for name, (uid, password, superuser) in USERS.items():
            self._manage("adduser", name, password, "--id", str(uid),
                         *(["--superuser"] if superuser else []))
        self._prepared = True

    def start(self, timeout=30):
        """Starts the server (same port as before) and waits until it answers."""
        self.prepare()
        if self.alive():
            return self
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
            cwd=APP_DIR, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AppError(f"the application exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if self._request("GET", "/accounts/login/")[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AppError(f"the application did not answer within {timeout}s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self):
        """Stops the server (SIGTERM, then SIGKILL): its port refuses
        connections afterwards. The database is kept for start()."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()
            self._log = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines=60):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---- URLs
    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def connect_url(self):
        return self.url("/wsgw/connect")

    @property
    def subscribe_url(self):
        return self.url("/wsgw/subscribe")

    def worker_args(self, subscribe=True):
        """workerd's arguments to use both hooks (connect only with
        subscribe=False)."""
        args = [f"--auth.connect_url={self.connect_url}"]
        if subscribe:
            args.append(f"--auth.subscribe_url={self.subscribe_url}")
        return tuple(args)

    # ---- HTTP
    def _request(self, method, path, body=None, headers=None, opener=None, timeout=10):
        """(status, headers, body bytes); HTTP errors are answers too."""
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url(path), data=data, method=method,
                                     headers=headers or {})
        if data is not None and "Content-Type" not in (headers or {}):
            req.add_header("Content-Type", "application/json")
        try:
            with (opener or urllib.request.build_opener()).open(req, timeout=timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def _test(self, path, payload=None, method="POST"):
        status, _, data = self._request(method, "/test/" + path,
                                        None if method == "GET" else (payload or {}))
        if not 200 <= status < 300:
            raise AppError(f"{method} /test/{path} {payload}: {status} {data[:500]!r}")
        return json.loads(data)

    # ---- browser side
    def login(self, user, password=None):
        """Logs in like a browser: GET the login page (csrftoken cookie),
        POST the form with that token. Returns the cookies the browser then
        holds: {"sessionid": ..., "csrftoken": ...} (Django rotates the
        csrftoken at login)."""
        password = self.passwords.get(user) if password is None else password
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        status, _, page = self._request("GET", "/accounts/login/", opener=opener)
        assert status == 200, f"GET /accounts/login/: {status}"
        m = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert m, "no CSRF token in the login form"
        form = urllib.parse.urlencode({"username": user, "password": password,
                                       "csrfmiddlewaretoken": m.group(1).decode()}).encode()
        status, _, _ = self._request("POST", "/accounts/login/", form, opener=opener,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        cookies = {c.name: c.value for c in jar}
        if status != 200 or "sessionid" not in cookies:  # 200: the redirect to / followed
            raise AppError(f"login as {user!r} failed: {status}")
        return cookies

    def logout(self, cookies):
        """POST /accounts/logout/ with the session and CSRF token: the session
        is deleted on the server."""
        form = urllib.parse.urlencode({"csrfmiddlewaretoken": cookies["csrftoken"]}).encode()
        status, _, _ = self._request(
            "POST", "/accounts/logout/", form,
            headers={"Cookie": self.cookie_header(cookies),
                     "Content-Type": "application/x-www-form-urlencoded"},
            opener=urllib.request.build_opener(_NoRedirect))
        if status != 302:
            raise AppError(f"logout failed: {status}")

    @staticmethod
    def cookie_header(cookies):
        """A Cookie header value for the websocket handshake."""
        return "; ".join(f"{k}={v}" for k, v in cookies.items())

    @staticmethod
    def ws_headers(cookies, gateway):
        """The headers a browser page of the gateway's own origin sends with
        its websocket handshake: Cookie, and the Origin that cookie
        credentials need (docs/PROTOCOL.md, Connecting)."""
        return {"Cookie": DjangoApp.cookie_header(cookies),
                "Origin": f"http://127.0.0.1:{gateway.port}"}

    # ---- application state (test-support endpoints)
    def create_user(self, name, password, id=None, superuser=False):
        uid = self._test("users", {"username": name, "password": password, "id": id,
                                   "superuser": superuser})["id"]
        self.users[name] = uid
        self.passwords[name] = password
        return uid

    def create_job(self, name=""):
        return self._test("jobs", {"name": name})["id"]

    def grant(self, user, job):
        """user: a name or an id."""
        self._test("grant", {"user": user, "job": job})

    def revoke(self, user, job):
        self._test("revoke", {"user": user, "job": job})

    def create_token(self, user, ttl=3600):
        """An API token for Authorization: Bearer KEY."""
        return self._test("tokens", {"user": user, "ttl": ttl})["key"]

    def expire_session(self, cookies, seconds):
        """The session of these cookies now ends `seconds` from now; returns
        that time (unix seconds), which the connect hook answers as expires."""
        return self._test("session-expiry", {"sessionid": cookies["sessionid"],
                                             "seconds": seconds})["expires"]

    # ---- hook behaviour and observation
    def set_delay(self, ms):
        """Both hooks sleep ms before answering (0: none)."""
        self._test("delay", {"ms": ms})

    def set_hook(self, hooks=None, delay_ms=0, status=None, body=None):
        """How hooks (default both: ["connect", "subscribe"]) answer from now
        on: after delay_ms, and with status and raw body instead of their
        real answer when status is set. set_hook() puts both back."""
        self._test("hooks", {"hooks": hooks, "delay_ms": delay_ms, "status": status,
                             "body": body})

    def calls(self, hook=None):
        """The hook requests seen, oldest first: dicts with hook, headers
        (Cookie, Authorization, Origin, X-Forwarded-For, X-Wsgw-Hook, ...),
        body (parsed), status, answer, started, ended (unix seconds)."""
        calls = self._test("calls", method="GET")["calls"]
        return [c for c in calls if hook is None or c["hook"] == hook]

    def in_flight_max(self):
        """The most hook calls handled at once since the last reset_calls()."""
        return self._test("calls", method="GET")["in_flight_max"]

    def reset_calls(self):
        self._test("calls/reset")

    # ---- calling the hooks as workerd does (tests of the application itself)
    def _hook(self, path, hook, headers, body, timeout):
        hdrs = {"Content-Type": "application/json", "X-Wsgw-Hook": hook, **(headers or {})}
        status, _, data = self._request("POST", path, json.dumps(body).encode(), hdrs,
                                        opener=urllib.request.build_opener(_NoRedirect),
                                        timeout=timeout)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data.decode("utf-8", "replace")

    def connect_hook(self, headers=None, body=None, timeout=10):
        return self._hook("/wsgw/connect", "connect", headers,
                          body or {"path": "/websocket/", "client": "127.0.0.1"}, timeout)

    def subscribe_hook(self, headers, user, channel, ids, timeout=10):
        return self._hook("/wsgw/subscribe", "subscribe", headers,
                          {"user": user, "channel": channel, "ids": ids}, timeout)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="session")
def django_app_db(tmp_path_factory):
    """A migrated database with the users, made once per session."""
    app = DjangoApp(tmp_path_factory.mktemp("djangoapp-template"))
    app.prepare()
    return app.db


@pytest.fixture
def django_app(tmp_path, request, django_app_db):
    """The test application, started (migrated, users alice/bob/admin);
    stopped at the end of the test. See DjangoApp."""
    app = DjangoApp(tmp_path / "djangoapp", template=django_app_db)
    app.start()
    try:
        yield app
    finally:
        app.stop()
        call = getattr(request.node, "rep_call", None)
        if call is not None and call.failed:
            print(f"\n---- django app log {app.log_path} (last 60 lines)\n{app.tail()}")
