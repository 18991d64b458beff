"""The systemd side of deployment: deploy/systemd/ units and the daemons'
sd_notify behaviour.

Shows: `systemd-analyze verify` accepts both units (the template as two
instances), with their man pages found (deploy/man) and ExecStart pointed
at the binaries under test; the hardening and service options the issue
asks for are set and `systemd-analyze security` rates them "OK" (exposure
under 2.0); memory and task ceilings are set (values and reasons in the
units); the worker reads its token secrets in place and both reload on
SIGHUP (the rotation itself: test_deploy_rotation.py); gatewayd and workerd speak the notify protocol as systemd
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
    # The token secrets are read in place (a credential is a copy taken at
    # start, so a reload would not see a rotation), through the static
    # group wsgw; both units reload with SIGHUP (test_deploy_rotation.py).
    for x in wk["ExecStart"] + wk["ExecStartPre"]:
        assert "--auth.secret_file=/etc/wsgw/auth.secret " in x, x
        assert "--auth.secret_previous_file=/etc/wsgw/auth.secret.previous" in x, x
    assert not any("auth" in x for x in wk["LoadCredential"])
    assert wk["SupplementaryGroups"] == ["wsgw"]
    for d in (gw, wk):
        assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "%i" in wk["Description"][-1]


def size(value):
    """A unit's memory size in bytes (K, M, G suffixes: powers of 1024)."""
    m = re.fullmatch(r"(\d+)([KMG]?)", value)
    assert m, value
    return int(m.group(1)) * 1024 ** " KMG".index(m.group(2) or " ")


def test_units_bound_memory_and_tasks():
    """A runaway (leak, thread leak, a pile of slow clients) ends in a
    restart of the one service, not an out-of-memory host: both units set
    MemoryHigh below MemoryMax, and TasksMax above what they use (measured:
    2 threads per gateway process, 2 per worker) but far below the host's
    default (15% of pid_max)."""
    gw = {k: v[-1] for k, v in directives(UNITS / "gatewayd.service").items()}
    wk = {k: v[-1] for k, v in directives(UNITS / "workerd@.service").items()}
    # The gateway scales with the host (a process per core, 6 KiB per
    # connection): a share of RAM, leaving room for nginx and the rest.
    high, top = (int(gw[k].rstrip("%")) for k in ("MemoryHigh", "MemoryMax"))
    assert gw["MemoryMax"].endswith("%") and high < top <= 80, gw
    # One gateway process killed, the others keep their clients.
    assert gw["OOMPolicy"] == "continue"
    assert 6 * 64 + 1 <= int(gw["TasksMax"]) <= 4096
    # The worker: above its worst legitimate case (3 queues x prefetch 64 x
    # 1 MiB messages = 192 MiB), well below a host.
    assert 192 * 2**20 < size(wk["MemoryHigh"]) < size(wk["MemoryMax"]) <= 2**30, wk
    assert 4 <= int(wk["TasksMax"]) <= 256
    assert "OOMPolicy" not in wk or wk["OOMPolicy"] == "stop"
    # The unit comments give the reasoning for each value.
    for name in ("gatewayd.service", "workerd@.service"):
        text = (UNITS / name).read_text()
        assert re.search(r"^# Memory\. Measured", text, re.M), name
        assert re.search(r"^# Tasks.*[Mm]easured", text, re.M), name


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
