"""The systemd side of deployment: deploy/systemd/ units and the daemons'
sd_notify behaviour.

Shows: `systemd-analyze verify` accepts both units (the template as two
instances), with their man pages found (deploy/man) and ExecStart pointed
at the binaries under test; the hardening and service options the issue
asks for are set and `systemd-analyze security` rates them "OK" (exposure
under 2.0); gatewayd and workerd speak the notify protocol as systemd
would see it on NOTIFY_SOCKET: READY=1 only once the broker is reached,
WATCHDOG=1 at half WATCHDOG_USEC (also while the broker is down), and
STOPPING=1 on SIGTERM.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, ROOT

UNITS = ROOT / "deploy" / "systemd"
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


def unit_copy(tmp_path):
    """The units with ExecStart on the binaries under test (verify wants
    them executable), the template instantiated twice."""
    d = tmp_path / "units"
    d.mkdir()
    for name in ("gatewayd.service", "workerd@.service"):
        text = (UNITS / name).read_text()
        assert "/usr/local/bin/" in text
        (d / name).write_text(text.replace("/usr/local/bin/", f"{BUILD}/"))
    return d


def directives(path):
    """{key: [values]} of a unit file."""
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_units_pass_systemd_analyze_verify(tmp_path):
    d = unit_copy(tmp_path)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MANPATH": str(ROOT / "deploy" / "man"),
           "SYSTEMD_LOG_LEVEL": "notice", "LANG": "C.UTF-8"}
    proc = subprocess.run([ANALYZE, "verify", "--man=yes", str(d / "gatewayd.service"),
                           str(d / "workerd@1.service"), str(d / "workerd@2.service")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=d)
    ours = [line for line in (proc.stdout + proc.stderr).splitlines()
            if "gatewayd" in line or "workerd" in line or "wsgw" in line]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr


def test_units_ask_for_what_production_needs():
    for name in ("gatewayd.service", "workerd@.service"):
        d = directives(UNITS / name)
        one = {k: v[-1] for k, v in d.items()}
        assert one["Type"] == "notify" and one["NotifyAccess"] == "main", name
        assert one["WatchdogSec"] == "30s" and one["Restart"] == "on-failure", name
        assert one["DynamicUser"] == "yes" and one["NoNewPrivileges"] == "yes", name
        assert one["ProtectSystem"] == "strict" and one["ProtectHome"] == "yes", name
        assert one["PrivateTmp"] == "yes" and one["CapabilityBoundingSet"] == "", name
        assert one["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX", name
        assert "@system-service" in d["SystemCallFilter"], name
        # Settings from the shared file, secrets as credentials (never argv).
        assert all("--config /etc/wsgw/wsgw.ini" in x for x in d["ExecStart"]), name
        assert all("--amqp.url_file=%d/amqp-url" in x for x in d["ExecStart"]), name
        assert not re.search(r"amqp://|--auth\.secret=", (UNITS / name).read_text()), name
    gw = directives(UNITS / "gatewayd.service")
    # The supervisor forwards SIGTERM: sent to every process as well, each
    # would get it twice.
    assert gw["KillMode"] == ["mixed"]
    assert int(gw["LimitNOFILE"][-1]) >= 100000
    wk = directives(UNITS / "workerd@.service")
    assert any("--auth.secret_file=%d/auth-secret" in x for x in wk["ExecStart"])
    assert "%i" in wk["Description"][-1]


@pytest.mark.parametrize("unit", ["gatewayd.service", "workerd@1.service"])
def test_units_security_exposure_is_ok(tmp_path, unit):
    d = unit_copy(tmp_path)
    proc = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(d / unit)],
                          capture_output=True, text=True, timeout=120, cwd=d)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) < 2.0 and m.group(2) == "OK", proc.stdout[-3000:]


def stop_and_expect_stopping(daemon, ns):
    daemon.expected_exit = True  # stopped here, not by the fixture
    problem = daemon.stop()
    assert problem is None, problem
    ns.drain(0.2)
    assert ns.count("STOPPING=1") == 1, ns.messages


def test_gatewayd_notifies_ready_watchdog_stopping(cluster, notify, monkeypatch):
    with monkeypatch.context() as m:  # the worker must not talk on our socket
        m.delenv("NOTIFY_SOCKET")
        cluster.worker(ready=False)
    gw = cluster.gateway()
    notify.wait_for("READY=1", 10, "gatewayd")
    assert any(m.startswith("STATUS=listening on 127.0.0.1:") for _, m in notify.messages)
    before = notify.count("WATCHDOG=1")
    notify.drain(2.0)
    # 0.5 s period: about 4 in 2 s; fewer than 3 means the timer is wrong.
    assert notify.count("WATCHDOG=1") - before >= 3, notify.messages
    assert notify.count("READY=1") == 1
    stop_and_expect_stopping(gw, notify)


def test_gatewayd_is_not_ready_without_broker(cluster, notify):
    gw = cluster.gateway("--amqp.url=amqp://guest:guest@127.0.0.1:1/", ready=False)
    notify.drain(2.5)
    # Alive (the loop pings) but not ready: systemd would keep it starting.
    assert notify.count("READY=1") == 0, notify.messages
    assert notify.count("WATCHDOG=1") >= 3, notify.messages
    stop_and_expect_stopping(gw, notify)


def test_workerd_notifies_ready_watchdog_stopping(cluster, notify):
    wk = cluster.worker()
    notify.wait_for("READY=1", 10, "workerd")
    before = notify.count("WATCHDOG=1")
    notify.drain(2.0)
    assert notify.count("WATCHDOG=1") - before >= 3, notify.messages
    stop_and_expect_stopping(wk, notify)


def test_workerd_is_not_ready_without_broker(cluster, notify):
    wk = cluster.worker("--amqp.url=amqp://guest:guest@127.0.0.1:1/", ready=False)
    notify.drain(2.5)
    assert notify.count("READY=1") == 0, notify.messages
    # The reconnect loop pings on each attempt (backoff 200 ms doubling):
    # at least one within 2.5 s.
    assert notify.count("WATCHDOG=1") >= 1, notify.messages
    stop_and_expect_stopping(wk, notify)


def test_daemons_need_no_systemd(cluster, monkeypatch):
    """Without NOTIFY_SOCKET (foreman, a shell) they run as ever: the whole
    suite shows it; here, explicitly, a handshake works."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    cluster.worker(ready=False)
    gw = cluster.gateway()
    assert gw.upgrade_status() == 101
