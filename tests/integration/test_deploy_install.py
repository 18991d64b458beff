"""`make install` and the generated documentation.

Shows: `make install DESTDIR=... PREFIX=/opt/wsgw` puts the binaries, both
units (ExecStart and config paths rewritten to PREFIX and SYSCONFDIR), the
man pages, the example config (also as SYSCONFDIR/wsgw/wsgw.ini, never
overwritten), the nginx site, the RabbitMQ script and the demo console in
place; the installed units (and installed man pages) pass `systemd-analyze
verify`; the example config is accepted by both daemons as shipped
and with every setting uncommented at its default; docs/OPERATIONS.md and
deploy/wsgw.ini.example are what the binaries' --help says (make docs);
the README links to pages that exist.
"""

import os
import re
import subprocess

from conftest import BUILD, ROOT

PREFIX = "/opt/wsgw"


def make_install(destdir, *extra):
    san = "1" if BUILD.name == "build-san" else "0"
    # The build under test, named as the suite's build named it (relative),
    # so make finds it up to date and installs it as is.
    build = os.path.relpath(BUILD, ROOT) if BUILD.is_relative_to(ROOT) else str(BUILD)
    proc = subprocess.run(["make", "-s", "install", f"DESTDIR={destdir}", f"PREFIX={PREFIX}",
                           f"SAN={san}", f"BUILD={build}", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_make_install_layout(tmp_path):
    dest = tmp_path / "root"
    make_install(dest)
    p = lambda rel: dest / rel.lstrip("/")  # noqa: E731
    for b in ("gatewayd", "workerd", "chanctl", "emitd"):
        assert os.access(p(f"{PREFIX}/bin/{b}"), os.X_OK), b
    for rel in ("share/man/man8/gatewayd.8", "share/man/man8/workerd.8",
                "share/man/man1/chanctl.1", "share/wsgw/wsgw.ini.example",
                "share/wsgw/demo/index.html", "share/wsgw/demo/app.js",
                "share/wsgw/demo/style.css", "share/wsgw/nginx/wsgw.conf",
                "share/wsgw/nginx/wsgw-tls.conf", "share/wsgw/nginx/snippets/wsgw-proxy.conf"):
        assert p(f"{PREFIX}/{rel}").is_file(), rel
    assert os.access(p(f"{PREFIX}/share/wsgw/rabbitmq/setup.sh"), os.X_OK)
    ini = p("/etc/wsgw/wsgw.ini")
    assert ini.read_text() == (ROOT / "deploy/wsgw.ini.example").read_text()
    for unit in ("gatewayd.service", "workerd@.service", "emitd.service"):
        text = p(f"{PREFIX}/lib/systemd/system/{unit}").read_text()
        assert f"ExecStart={PREFIX}/bin/" in text and "/usr/local/bin" not in text, unit
    site = p(f"{PREFIX}/share/wsgw/nginx/wsgw.conf").read_text()
    assert f"alias {PREFIX}/share/wsgw/demo/;" in site
    # The console's SDK is installed as a file (the tree has a link), the
    # same bytes as clients/js/src/wsgw.js, which app.js imports.
    sdk = p(f"{PREFIX}/share/wsgw/demo/wsgw.js")
    assert sdk.is_file() and not sdk.is_symlink()
    assert sdk.read_bytes() == (ROOT / "clients/js/src/wsgw.js").read_bytes()
    assert 'from "./wsgw.js"' in p(f"{PREFIX}/share/wsgw/demo/app.js").read_text()

    # A second install keeps the operator's config.
    ini.write_text("[gateway]\nlisten = 0.0.0.0:9000\n")
    make_install(dest)
    assert ini.read_text() == "[gateway]\nlisten = 0.0.0.0:9000\n"

    # The installed units verify, with ExecStart mapped into DESTDIR (where
    # the installed binaries are; systemd-analyze 252 has no --root for
    # verify).
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MANPATH": str(p(f"{PREFIX}/share/man")),
           "LANG": "C.UTF-8"}
    units = tmp_path / "units"
    units.mkdir()
    for unit in ("gatewayd.service", "workerd@.service", "emitd.service"):
        text = p(f"{PREFIX}/lib/systemd/system/{unit}").read_text()
        (units / unit).write_text(text.replace(f"{PREFIX}/bin/", f"{p(PREFIX)}/bin/"))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=yes",
                           str(units / "gatewayd.service"), str(units / "workerd@1.service"),
                           str(units / "emitd.service")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=units)
    ours = [line for line in (proc.stdout + proc.stderr).splitlines()
            if "gatewayd" in line or "workerd" in line or "emitd" in line]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr


def check_config(prog, path, *extra):
    proc = subprocess.run([str(BUILD / prog), "--config", str(path), "--check-config", *extra],
                          capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


def test_example_config_is_valid_for_both_daemons(tmp_path):
    example = ROOT / "deploy/wsgw.ini.example"
    assert check_config("gatewayd", example) == (0, "config ok\n")
    assert check_config("workerd", example, "--auth.secret=" + "x" * 32) == (0, "config ok\n")
    keys = tmp_path / "emit.keys"
    keys.write_text("backend " + "k" * 32 + "\n")
    keys.chmod(0o600)
    assert check_config("emitd", example, f"--emit.key_file={keys}") == (0, "config ok\n")
    # Every setting uncommented at its shipped default (and the [groups]
    # block): still valid, so the defaults written there are real values.
    lines = []
    for line in example.read_text().splitlines():
        m = re.match(r"^;(\[\w+\]|\w+ = \S.*)$", line)
        if m and "_file = " not in line:
            lines.append(m.group(1))
        else:
            lines.append(line)
    full = tmp_path / "full.ini"
    full.write_text("\n".join(lines) + "\n")
    assert full.read_text().count("\n[groups]") == 1
    n_set = sum(1 for line in lines if re.match(r"^\w+ = ", line))
    assert n_set >= 30, n_set
    assert check_config("gatewayd", full) == (0, "config ok\n")
    assert check_config("workerd", full, "--auth.secret=" + "x" * 32) == (0, "config ok\n")
    assert check_config("emitd", full, f"--emit.key_file={keys}") == (0, "config ok\n")
    # And a typo in it is refused with its line.
    bad = tmp_path / "bad.ini"
    bad.write_text(full.read_text().replace("[gateway]\n", "[gateway]\nlisten_typo = 1\n", 1))
    rc, out = check_config("gatewayd", bad)
    assert rc == 2 and "bad.ini:" in out and "listen_typo" in out, out


def test_settings_docs_match_the_binaries():
    proc = subprocess.run(["/usr/bin/python3", str(ROOT / "deploy/gen-settings.py"),
                           "--check", "--build", str(BUILD)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ops = (ROOT / "docs/OPERATIONS.md").read_text()
    for prog in ("gatewayd", "workerd", "emitd"):
        help_text = subprocess.run([str(BUILD / prog), "--help"], capture_output=True,
                                   text=True, timeout=30).stdout
        for section, key in re.findall(r"^  --(\w+)\.(\w+)=", help_text, re.M):
            assert f"| `{section}.{key}` |" in ops, f"{prog}: {section}.{key}"
    assert "## Metrics" in ops


def test_readme_links_exist():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert links, "README has no links"
    for link in links:
        if "://" in link:
            continue
        assert (ROOT / link).exists(), link
    for page in ("docs/DEPLOY.md", "docs/PROTOCOL.md", "docs/OPERATIONS.md"):
        assert page in links, page


def test_check_config_says_ok_only_after_every_check(tmp_path):
    """The checks that come after the generic ones (the worker's [groups]
    policy, the gateway's trusted proxies, the broker list) must fail
    --check-config without a "config ok" first."""
    policy = tmp_path / "policy.ini"
    policy.write_text("[groups]\njobs = sometimes\n")
    rc, out = check_config("workerd", policy, "--auth.secret=" + "x" * 32)
    assert rc == 2 and "config ok" not in out and "policy.ini:2" in out, out
    empty = tmp_path / "empty.ini"
    empty.write_text("")
    rc, out = check_config("gatewayd", empty, "--gateway.trusted_proxies=10.0.0.0/99")
    assert rc == 2 and "config ok" not in out, out
    rc, out = check_config("gatewayd", empty, "--amqp.url=amqp://a/,,amqp://b/")
    assert rc == 2 and "config ok" not in out, out
    rc, out = check_config("chanctl", empty)
    assert (rc, out) == (0, "config ok\n")
