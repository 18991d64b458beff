"""Rotating the token secret under the shipped workerd@.service, by the steps
docs/DEPLOY.md gives ("Rotating the token secret").

There is no systemd here, so the test does what systemd would: workerd runs
with the unit's own ExecStart line (paths mapped into a temporary root:
/etc/wsgw, the credentials folder %d, the binaries under test) as an
unprivileged user whose only supplementary group owns the secret files
(DynamicUser=yes + SupplementaryGroups=wsgw; the group is a free numeric id
here, not a name in /etc/group), in a user namespace of its own as
PrivateUsers=yes makes it. The install lines of DEPLOY.md that make the
secret files, and then the rotation blocks, run as shell scripts, changed
only in those paths, the group name, and `systemctl reload 'workerd@*'`,
which becomes the unit's ExecReload with $MAINPID set.

Shows: the worker starts reading the files in place (root:wsgw 0640) as a
user in the group; after the rotation steps a token signed with the new
secret is accepted and one signed with the old secret still is; a client
connected before the rotation stays connected and keeps receiving events
through both reloads; after the documented end of the window the old
secret is refused (403) and the new one accepted.
"""

import asyncio
import grp
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (BUILD, ROOT, Daemon, connect, handshake_status, jwt_for, recv_json,
                      recv_text, run, subscribe, wait_until)

UNIT = ROOT / "deploy" / "systemd" / "workerd@.service"
DEPLOY = ROOT / "docs" / "DEPLOY.md"
UID = 64321  # in systemd's DynamicUser range (61184-65519)


def free_gid():
    gid = 64322
    while True:
        try:
            grp.getgrgid(gid)
        except KeyError:
            return gid
        gid += 1


def unit_lines(key):
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
            if line.startswith(key + "=")]


def sh_blocks(section):
    """The ```sh blocks of one section (### heading) of DEPLOY.md."""
    text = DEPLOY.read_text()
    m = re.search(rf"^##+ {re.escape(section)}\n(.*?)(?=^##+ |\Z)", text, re.S | re.M)
    assert m, f"no section {section!r} in DEPLOY.md"
    return re.findall(r"```sh\n(.*?)```", m.group(1), re.S)


@pytest.fixture
def root():
    """A temporary root the unprivileged worker may traverse (pytest's
    tmp_path is 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix="wsgw-rotation-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_documented_rotation_under_the_unit(cluster, root):
    gid = free_gid()
    etc = root / "etc/wsgw"
    creds = root / "run/credentials/workerd@1.service"
    etc.mkdir(parents=True)
    creds.mkdir(parents=True)
    (etc / "wsgw.ini").write_text("[log]\nlevel = info\n")

    def shell(script, reload_pid=None):
        """A DEPLOY.md block as root, in the temporary root."""
        script = script.replace("/etc/wsgw", str(etc))
        script = re.sub(r"\bchgrp wsgw\b", f"chgrp {gid}", script)
        script = script.replace("getent group wsgw >/dev/null || groupadd --system wsgw",
                                ": the group is a free numeric id here")
        if reload_pid is not None:
            (reload,) = unit_lines("ExecReload")
            cmd = reload.replace("$MAINPID", str(reload_pid))
            script, n = re.subn(r"systemctl reload 'workerd@\*'", cmd, script)
            assert n == 1, script
        assert "systemctl" not in script, script
        subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True, timeout=30)

    # DEPLOY.md step 3, the lines that make the secret files.
    (install,) = [b for b in sh_blocks("3. Secrets and config on each machine")
                  if "auth.secret" in b]
    shell("\n".join(line for line in install.splitlines()
                    if "auth.secret" in line or "groupadd" in line))
    for name in ("auth.secret", "auth.secret.previous"):
        st = (etc / name).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, gid, 0o640), name
    old = (etc / "auth.secret").read_text().strip()
    assert len(old) >= 32

    # systemd's credential: a copy of the URL file, readable by the user.
    (creds / "amqp-url").write_text(cluster.amqp_url + "\n")
    os.chown(creds / "amqp-url", UID, UID)
    (creds / "amqp-url").chmod(0o400)
    os.chown(creds, UID, UID)
    creds.chmod(0o500)

    (exec_start,) = unit_lines("ExecStart")
    argv = shlex.split(exec_start.replace("/usr/local/bin/", f"{BUILD}/")
                       .replace("/etc/wsgw/", f"{etc}/").replace("%d/", f"{creds}/"))
    assert f"--auth.secret_file={etc}/auth.secret" in argv
    # DynamicUser=yes, SupplementaryGroups=wsgw, NoNewPrivileges=yes, then
    # PrivateUsers=yes as systemd orders them: groups are set first, then
    # the user namespace maps only the service's own uid and gid, so the
    # group shows as "nogroup" inside; the kernel still checks the file
    # against the real group.
    as_service = ["setpriv", f"--reuid={UID}", f"--regid={UID}", f"--groups={gid}",
                  "--no-new-privs", "--"]
    assert "PrivateUsers=yes" in UNIT.read_text().splitlines()
    as_service += ["unshare", "--user", f"--map-user={UID}", f"--map-group={UID}", "--"]
    before = cluster.broker.consumers(cluster.vhost).get("websocket.connect", 0)
    wk = Daemon("workerd@1", as_service + argv, cluster.log_dir / "workerd-unit.log")
    cluster.daemons.append(wk)
    cluster.wait_workers(before + 1, wk)
    gw = cluster.gateway()

    def reloads():
        return len(re.findall(r"event=reload ", wk.log()))

    def reload_with(block):
        n = reloads()
        shell(block, reload_pid=wk.pid)
        wait_until(lambda: reloads() > n or "reload_failed" in wk.log(), 10, "the reload")
        assert "reload_failed" not in wk.log(), wk.tail()
        return wk.log().splitlines()[-1]

    async def accepted(secret, user):
        ws = await connect(gw.url(token=jwt_for(user, secret=secret)))
        assert await recv_json(ws, what="the accept message") == {"accept": True, "user": user}
        await ws.close()

    async def event_reaches(ws, n):
        text = f'{{"n": {n}}}'
        await asyncio.to_thread(cluster.emit, "jobs-status_changed", text)
        assert await recv_text(ws, what=f"event {n} on the connection from before") == text

    rotate, end_window = sh_blocks("Rotating the token secret")

    async def main():
        # A client from before the rotation, with a token on the old key.
        ws = await connect(gw.url(token=jwt_for(7, secret=old)))
        assert (await recv_json(ws))["accept"] is True
        errors, reply = await subscribe(ws, {"jobs": ["status_changed"]})
        assert reply["groups_current"] == ["jobs-status_changed"]
        await event_reaches(ws, 1)
        # A token on a key the worker does not know yet: refused.
        assert await handshake_status(gw.url(token=jwt_for(8, secret="n" * 44))) == 403

        line = await asyncio.to_thread(reload_with, rotate)
        assert "secret=1 secret_previous=1" in line, line
        new = (etc / "auth.secret").read_text().strip()
        assert new != old and len(new) >= 32
        assert (etc / "auth.secret.previous").read_text().strip() == old
        st = (etc / "auth.secret").stat()
        assert (st.st_gid, st.st_mode & 0o777) == (gid, 0o640)
        assert not (etc / "auth.secret.new").exists()
        await accepted(new, 8)   # the backend's new key
        await accepted(old, 9)   # tokens it signed before still work
        await event_reaches(ws, 2)

        # The window ends: the old key is refused, the new one is not.
        await asyncio.to_thread(reload_with, end_window)
        assert await handshake_status(gw.url(token=jwt_for(9, secret=old))) == 403
        await accepted(new, 10)
        await event_reaches(ws, 3)  # still connected, still served
        await ws.close()
    run(main())
    assert wk.alive() and gw.alive()
    # It ran as the unprivileged user, with the group and nothing else.
    status = Path(f"/proc/{wk.pid}/status").read_text()
    assert re.search(rf"^Uid:\s+{UID}\s", status, re.M), status
    assert re.search(rf"^Groups:\s+{gid}\s*$", status, re.M), status


def test_the_worker_cannot_read_the_secret_without_the_group(root):
    """The group is what grants the read: the same user without it is refused
    at start (so the unit's SupplementaryGroups= is load-bearing)."""
    secret = root / "auth.secret"
    secret.write_text("s" * 44 + "\n")
    gid = free_gid()
    os.chown(secret, 0, gid)
    secret.chmod(0o640)
    proc = subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
                           "--", str(BUILD / "workerd"), f"--auth.secret_file={secret}",
                           f"--auth.secret_previous_file={secret}", "--check-config"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Permission denied" in proc.stderr, proc.stderr
    proc = subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={UID}", f"--groups={gid}",
                           "--", str(BUILD / "workerd"), f"--auth.secret_file={secret}",
                           f"--auth.secret_previous_file={secret}", "--check-config"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "config ok" in proc.stdout, proc.stderr
