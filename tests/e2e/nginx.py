"""nginx.py - a real nginx (Debian's) in front of test gateways, configured
with the shipped site file deploy/nginx/wsgw.conf (or wsgw-tls.conf).

Owns: one nginx per call, with its own prefix, nginx.conf, pid file, logs
and temp folders under a test's temporary folder, on a free loopback port.
The shipped site file is used as is, except for what must differ in a test:
the listen port (loopback only, no IPv6 line), the upstream servers (the
test's gateways), the demo folder (deploy/demo of this tree) and, for TLS,
the certificate paths. Stopped by pid (SIGTERM, then SIGKILL).
"""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NGINX = "/usr/sbin/nginx"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Nginx:
    """nginx serving the wsgw site on 127.0.0.1:port."""

    def __init__(self, workdir, upstream_ports, site="wsgw.conf", tls=None, overrides=None):
        self.dir = Path(workdir)
        self.port = _free_port()
        self.http_port = None  # the plain-HTTP redirect port of the TLS site
        for sub in ("logs", "tmp", "snippets"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        snippet = (ROOT / "deploy/nginx/snippets/wsgw-proxy.conf").read_text()
        for pattern, repl in (overrides or {}).items():
            snippet, n = re.subn(pattern, repl, snippet)
            assert n, f"override {pattern!r} matched nothing in wsgw-proxy.conf"
        (self.dir / "snippets/wsgw-proxy.conf").write_text(snippet)
        site_text = self._site(site, upstream_ports, tls)
        # The site's own access log (format wsgw), into this nginx's folder
        # (here, not in _site, so that subclasses get it too).
        site_text = re.sub(r"access_log /var/log/nginx/\S+ ",
                           f"access_log {self.dir}/logs/access.log ", site_text)
        (self.dir / "site.conf").write_text(site_text)
        (self.dir / "nginx.conf").write_text(self._main())
        self.log = open(self.dir / "logs/stderr.log", "wb")
        self.proc = subprocess.Popen(
            [NGINX, "-p", f"{self.dir}/", "-c", str(self.dir / "nginx.conf"),
             "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not _port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start:\n{self.error_log()}")
            time.sleep(0.05)

    def _site(self, site, upstream_ports, tls):
        text = (ROOT / "deploy/nginx" / site).read_text()
        servers = "".join(f"    server 127.0.0.1:{p};\n" for p in upstream_ports)
        text, n = re.subn(r"(upstream wsgw_gateways \{\n(?:\s*least_conn;\n)?)"
                          r"\s*server 127\.0\.0\.1:8051;\n", lambda m: m.group(1) + servers, text)
        assert n == 1, "the upstream block of the site file changed shape"
        text = re.sub(r"^\s*listen \[::\]:\d+.*\n", "", text, flags=re.M)
        if tls:
            self.http_port = _free_port()
            text, n = re.subn(r"listen 443 ssl;", f"listen 127.0.0.1:{self.port} ssl;", text)
            assert n == 1
            text, n = re.subn(r"listen 80;", f"listen 127.0.0.1:{self.http_port};", text)
            assert n == 1
            text = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {tls[0]};", text)
            text = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {tls[1]};", text)
        else:
            text, n = re.subn(r"listen 80;", f"listen 127.0.0.1:{self.port};", text)
            assert n == 1
        text, n = re.subn(r"alias /usr/local/share/wsgw/demo/;",
                          f"alias {ROOT}/deploy/demo/;", text)
        assert n == 1
        return text

    def _main(self):
        d = self.dir
        # As root the workers would switch to "nobody", who may not read
        # this tree; a test nginx has nothing to protect.
        user = "user root;\n" if os.geteuid() == 0 else ""
        return f"""{user}worker_processes 1;
error_log {d}/logs/error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/logs/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    types {{ text/html html; text/css css; application/javascript js; image/png png; }}
    default_type application/octet-stream;
    include {d}/site.conf;
}}
"""

    def url(self, path, scheme="http"):
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def error_log(self):
        parts = []
        for name in ("stderr.log", "error.log"):
            p = self.dir / "logs" / name
            if p.exists():
                parts.append(p.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def access_log(self):
        p = self.dir / "logs/access.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self):
        if self.proc.poll() is None:
            # SIGTERM is nginx's fast stop: a graceful one (SIGQUIT) would
            # wait for every open websocket to end.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
