"""sdk_site.py - the web site a browser test of the JS SDK loads: a page
that imports clients/js/src/wsgw.js as an ES module, subscribes, and
records everything the SDK tells it, and a token endpoint for the page's
token callback.

Owns: one threaded Python HTTP server on a free loopback port serving
exactly three paths: /sdk.html (the page, from tests/e2e/sdk_page.html),
/wsgw.js (the SDK from this tree, never a copy) and /token (a fresh
short-lived JWT for the page's user, counted). Must not: serve anything
else from the disk (a 404), or mint tokens for another user than the
site was told to.

The page opens its websocket to the gateway directly (another origin: the
test site has no CSP, and the token goes in the URL, which the gateway
accepts from any origin). Page parameters (query string): ws (the
gateway's websocket URL), groups (JSON), auth ("callback": the token from
/token, or "static": the token from /token fetched once and passed as a
string), plus backoff/heartbeat knobs passed to the SDK as numbers.
"""

import functools
import http.server
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "clients/js/src/wsgw.js"
PAGE = Path(__file__).resolve().parent / "sdk_page.html"
MAX_TTL = 3600  # a page asks for its tokens' lifetime; bounded


class _Handler(http.server.BaseHTTPRequestHandler):
    def __init__(self, site, *args, **kwargs):
        self.site = site
        super().__init__(*args, **kwargs)

    def log_message(self, *args):  # the test's output stays readable
        pass

    def _send(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/sdk.html":
            self._send(200, "text/html; charset=utf-8", PAGE.read_bytes())
        elif path == "/wsgw.js":
            if not SDK.exists():
                self._send(404, "text/plain", b"clients/js/src/wsgw.js is not in this tree\n")
            else:
                self._send(200, "text/javascript; charset=utf-8", SDK.read_bytes())
        elif path == "/token":
            self.site.tokens_served += 1
            self._send(200, "text/plain", self.site.mint().encode())
        else:
            self._send(404, "text/plain", b"not found\n")


class SdkSite:
    """SdkSite(mint) serves the page; mint() returns a new JWT each call."""

    def __init__(self, mint):
        self.mint = mint
        self.tokens_served = 0
        handler = functools.partial(_Handler, self)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)
