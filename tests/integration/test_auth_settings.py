"""Issue 12: settings that need daemons of their own (the module cluster of
test_auth_ambient.py would answer their connects too).

- gateway.allowed_origins is one setting both daemons read from the shared
  file: the gateway refuses unlisted Origins for every token, the worker
  accepts a cookie token only from a listed one.
- Item 8: an HS256 secret (or secret_previous) under 32 bytes is refused at
  start, on SIGHUP (the running settings stay), and by chanctl token.
"""

import signal
import subprocess

import pytest

from authclient import joined, own_origin, refusals
from conftest import SECRET, binary, handshake_status, jwt_for, run, wait_until
from faults import start_daemon, wait_record, worker_argv, write_secret


def test_allowed_origins_is_one_setting_for_both_daemons(cluster, tmp_path):
    """gateway.allowed_origins in the shared file: the gateway refuses other
    Origins for every token, the worker accepts a cookie token only from a
    listed one (the list replaces the Host's-own default)."""
    ini = tmp_path / "wsgw.ini"
    ini.write_text("[gateway]\nallowed_origins = https://ui.example.com\n"
                   "max_rate = 100\n[worker]\nmax_groups = 100\n")
    wk = cluster.worker(f"--config={ini}")
    gw = cluster.gateway(f"--config={ini}")
    token = jwt_for(7)

    async def main():
        accept, _, _ = await joined(gw.url(), {"Cookie": f"token={token}",
                                               "Origin": "https://ui.example.com"}, {})
        assert accept["user"] == 7
        # The Host's own origin is not listed: refused (by the gateway).
        assert await handshake_status(gw.url(), {"Cookie": f"token={token}",
                                                 "Origin": own_origin(gw)}) == 403
        # No Origin: the gateway lets it through, the worker refuses the cookie.
        assert await handshake_status(gw.url(), {"Cookie": f"token={token}"}) == 403
    run(main())
    wait_until(lambda: refusals(wk, "cookie token without Origin"), 10,
               "the worker to log the refusal")


# ---- 8: secret length --------------------------------------------------------

@pytest.mark.parametrize("flag", ["--auth.secret", "--auth.secret_previous"])
def test_secret_under_32_bytes_is_refused_at_start(flag):
    argv = [binary("workerd"), "--amqp.url=amqp://127.0.0.1:1/", f"--auth.secret={SECRET}",
            f"{flag}={'s' * 31}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    assert out.returncode == 2, out
    name = flag[2:]
    assert f"{name} is 31 bytes; an HS256 secret needs at least 32" in out.stderr, out.stderr
    out = subprocess.run(argv[:3] + [f"{flag}={'s' * 32}", "--check-config"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0 and out.stdout == "config ok\n", out


def test_chanctl_token_refuses_a_short_secret():
    out = subprocess.run([binary("chanctl"), "token", "--user", "7", "--auth.secret=short"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode != 0 and out.stdout == ""
    assert "auth.secret is 5 bytes" in out.stderr


def test_short_secret_on_reload_keeps_the_running_settings(cluster, tmp_path):
    good = "reload-secret-0123456789abcdef0123"
    secret_file = tmp_path / "secret"
    write_secret(secret_file, good)
    conf = tmp_path / "workerd.ini"
    conf.write_text(f"[auth]\nsecret_file = {secret_file}\n")
    wk = start_daemon(cluster, "workerd", worker_argv(cluster, f"--config={conf}"))
    cluster.wait_workers(1, wk)
    gw = cluster.gateway()
    write_secret(secret_file, "too-short")
    wk.proc.send_signal(signal.SIGHUP)
    rec = wait_record(wk, "reload_failed")[0]
    assert rec["kept"] == "running_settings", rec
    assert "auth.secret is 9 bytes" in wk.log()

    async def main():
        accept, _, _ = await joined(gw.url(token=jwt_for(7, secret=good)), {}, {})
        assert accept["user"] == 7
        assert await handshake_status(gw.url(token=jwt_for(7, secret="too-short"))) == 403
    run(main())
    assert wk.alive()
