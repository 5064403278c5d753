"""The real `stack-tui` command line, run as a subprocess with its own STACK_TUI_HOME."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tui

# The console script of the interpreter running the tests (the venv's), else this checkout.
EXE = str(Path(sys.executable).parent / "stack-tui")
if not Path(EXE).exists():
    EXE = None
SECRETS = {
    "admin_password": "Adm1n-'Plan\"-$ecret ü",
    "demo_password": "Dem0-Plan-Secret-xyz",
    "glance_password": "Gl4nce-Plan-Secret-xyz",
}


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return h


def run(home: Path, *args: str, timeout: float = 60, env: dict | None = None):
    argv = [EXE] if EXE else [sys.executable, "-m", "tui.cli"]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STACK_TUI_")}
    # this checkout's code, whatever checkout the venv's console script was installed from
    root = str(Path(__file__).resolve().parent.parent)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, full_env.get("PYTHONPATH")]))
    full_env.update(STACK_TUI_HOME=str(home), **(env or {}))
    t0 = time.monotonic()
    r = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout,
                       env=full_env, stdin=subprocess.DEVNULL)
    r.duration = time.monotonic() - t0
    return r


def profile_text(address="10.199.3.254", port=22, platform="auto", secrets=True, extra=""):
    text = f"""version = 1
[host]
address = "{address}"
port = {port}
[openstack]
platform = "{platform}"
{extra}
[image]
url = "https://example.org/cirros.img"
"""
    if secrets:
        text += "[secrets]\n" + "".join(
            f"{k} = {json.dumps(v, ensure_ascii=False)}\n" for k, v in SECRETS.items())
    return text


def saved_profile(home: Path, name: str, text: str) -> Path:
    d = home / "config" / "profiles"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.toml"
    path.write_text(text)
    return path


def no_secret(*texts: str) -> None:
    for text in texts:
        for v in SECRETS.values():
            assert v not in text
            assert json.dumps(v)[1:-1] not in text


def no_traceback(r) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


# --------------------------------------------------------------------------- help / version


def test_version(home):
    r = run(home, "--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"stack-tui {tui.__version__}"


@pytest.mark.parametrize("args", [
    [], ["plan"], ["apply"], ["profiles"], ["profiles", "list"], ["profiles", "show"],
    ["profiles", "delete"], ["profiles", "new"], ["sandbox"], ["sandbox", "up"], ["sandbox", "down"],
    ["sandbox", "status"],
])
def test_help_everywhere(home, args):
    r = run(home, *args, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: stack-tui")
    assert not any(home.rglob("*.toml"))     # --help never writes anything


def test_top_level_help_lists_commands(home):
    out = run(home, "--help").stdout
    for cmd in ("plan", "apply", "profiles", "sandbox", "--profile", "--version"):
        assert cmd in out
    out = run(home, "apply", "--help").stdout
    for opt in ("--yes", "--accept-new-host-key", "--from", "--only"):
        assert opt in out


def test_unknown_command_is_usage_error(home):
    r = run(home, "frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    no_traceback(r)


# --------------------------------------------------------------------------- plan


def test_plan_prints_phases_and_masks_secrets(home, tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(profile_text())
    before = path.read_bytes()
    r = run(home, "plan", str(path), timeout=20, env={"STACK_TUI_SUDO_PASSWORD": "Sud0-Plan-Secret-xyz"})
    assert r.returncode == 0, r.stderr
    assert r.duration < 10   # the host (an unused address) is never contacted
    out = r.stdout
    phases = [line for line in out.splitlines() if line and not line.startswith(" ") and line.endswith("]")]
    phase_ids = [p.rsplit("[", 1)[1][:-1] for p in phases]
    core = ["prepare", "mariadb", "rabbitmq", "memcached", "keystone", "glance", "image", "finish"]
    assert [p for p in phase_ids if p in core] == core
    steps = [line.split()[1] for line in out.splitlines() if line[:5].strip().rstrip(".").isdigit()]
    for step in ("prepare.detect", "prepare.packages", "mariadb.databases", "keystone.db_sync",
                 "keystone.bootstrap", "glance.db_sync", "image.upload", "finish.verify"):
        assert step in steps
    # Exactly the engine's plan, in its order, numbered 1..n.
    from tui.tasks import profile as pr
    from tui.tasks.deploy import build_plan

    plan = build_plan(pr.load(path))
    assert phase_ids == [p.id for p in plan.phases]
    assert steps == [st.id for st in plan.steps()]
    numbers = [int(line.split(".")[0]) for line in out.splitlines() if line[:5].strip().rstrip(".").isdigit()]
    assert numbers == list(range(1, len(steps) + 1))
    assert "assumed; detected from /etc/os-release at run time" in out
    assert "********" in out
    no_secret(out, r.stderr)
    assert "Sud0-Plan-Secret-xyz" not in out
    assert path.read_bytes() == before
    assert not (tmp_path / "site.secrets.toml").exists()   # plan generates nothing


def _plan(home, tmp_path, platform):
    path = tmp_path / f"{platform}.toml"
    path.write_text(profile_text(platform=platform))
    r = run(home, "plan", str(path))
    assert r.returncode == 0, r.stderr
    no_secret(r.stdout)
    return r.stdout


def _step_block(out: str, step: str) -> str:
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if f". {step} " in line)
    block = [lines[i]]
    for line in lines[i + 1:]:
        if not line.startswith("      "):
            break
        block.append(line)
    return "\n".join(block)


def test_plan_debian_12(home, tmp_path):
    out = _plan(home, tmp_path, "debian-12")
    assert "Platform: Debian 12 (bookworm), OpenStack zed" in out
    assert "NOT YET VERIFIED" not in out
    assert "prepare.repo" not in out
    pk = _step_block(out, "prepare.packages")
    assert "apt-get install" in pk
    for pkg in ("mariadb-server", "rabbitmq-server", "memcached", "keystone", "apache2",
                "libapache2-mod-wsgi-py3", "glance-api", "python3-openstackclient"):
        assert f" {pkg}" in pk
    assert "dnf" not in out and "cloud-archive" not in out
    assert "enabled_backends=fs:file" in _step_block(out, "glance.config")
    assert "Support: Debian oldstable" in out and "past upstream maintenance" in out


def test_plan_debian_13(home, tmp_path):
    out = _plan(home, tmp_path, "debian-13")
    assert "Platform: Debian 13 (trixie), OpenStack 2025.1 (Epoxy)" in out
    assert "NOT YET VERIFIED" not in out
    assert "Support: Debian stable" in out
    assert "enabled_backends=fs:file" in _step_block(out, "glance.config")
    assert "delete_user guest" in _step_block(out, "rabbitmq.user")
    assert "systemctl enable --now glance-api" in out


@pytest.mark.parametrize("version,codename,release", [("22.04", "jammy", "zed"),
                                                      ("24.04", "noble", "caracal")])
def test_plan_ubuntu(home, tmp_path, version, codename, release):
    out = _plan(home, tmp_path, f"ubuntu-{version}")
    assert f"Platform: Ubuntu {version} ({codename}) + Cloud Archive {release}" in out
    assert f"add-apt-repository -y cloud-archive:{release}" in _step_block(out, "prepare.repo")
    pk = _step_block(out, "prepare.packages")
    assert "apt-get install" in pk and " keystone" in pk and " glance-api" in pk
    assert "dnf" not in out
    assert "stores=file,http" not in out


def test_plan_el9(home, tmp_path):
    out = _plan(home, tmp_path, "el9")
    assert "Platform: Rocky/Alma/CentOS Stream 9" in out and "OpenStack 2024.1" in out
    repo = _step_block(out, "prepare.repo")
    assert "dnf install -y -q centos-release-openstack-" in repo
    pk = _step_block(out, "prepare.packages")
    assert "dnf install" in pk and "apt-get" not in pk
    for pkg in ("openstack-keystone", "httpd", "python3-mod_wsgi", "openstack-glance", "mariadb-server",
                "python3-PyMySQL"):
        assert f" {pkg}" in pk
    assert "libapache2-mod-wsgi-py3" not in out and "apache2 " not in pk
    assert "systemctl enable --now openstack-glance-api" in out
    assert "/etc/httpd/conf.d/" in out and "/etc/my.cnf.d/openstack.cnf" in out


def test_plan_only_selected_services(home, tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(profile_text(secrets=False, extra='services = ["mariadb", "memcached", "keystone"]\ndemo = false'))
    r = run(home, "plan", str(path))
    assert r.returncode == 0, r.stderr
    assert "[keystone]" in r.stdout
    for absent in ("[glance]", "[rabbitmq]", "glance-api", "rabbitmq-server", "[image]"):
        assert absent not in r.stdout


def test_plan_broken_profile(home, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(profile_text().replace("port = 22", "prot = 22"))
    r = run(home, "plan", str(path))
    assert r.returncode == 2
    assert str(path) in r.stderr and "[host.prot]" in r.stderr and "unknown key" in r.stderr
    no_traceback(r)


# --------------------------------------------------------------------------- profiles


def test_profiles_list_show_delete(home):
    assert "No profiles yet" in run(home, "profiles", "list").stdout
    saved_profile(home, "alpha", profile_text(address="10.0.0.1", port=2201))
    saved_profile(home, "beta", profile_text(address="server.example.org", secrets=False))
    saved_profile(home, "gamma", "version = 1\n[host\n")
    r = run(home, "profiles", "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["alpha", "beta", "gamma"]
    assert "root@10.0.0.1:2201" in lines[0] and "root@server.example.org:22" in lines[1]
    assert "BROKEN" in lines[2] and "not valid TOML" in lines[2]
    no_secret(r.stdout)

    r = run(home, "profiles", "show", "beta")
    assert r.returncode == 0, r.stderr
    assert str(home / "config/profiles/beta.toml") in r.stdout
    assert 'address = "server.example.org"' in r.stdout and "[secrets]" not in r.stdout

    r = run(home, "profiles", "show", "gamma")
    assert r.returncode == 2 and "gamma.toml" in r.stderr and "not valid TOML" in r.stderr
    no_traceback(r)

    secrets_file = home / "config/profiles/alpha.secrets.toml"
    secrets_file.write_text('admin_password = "x-file-secret"\n')
    r = run(home, "profiles", "delete", "alpha")
    assert r.returncode == 2 and "--yes" in r.stderr and secrets_file.exists()
    r = run(home, "profiles", "delete", "alpha", "--yes")
    assert r.returncode == 0 and "Deleted profile alpha" in r.stdout
    assert not (home / "config/profiles/alpha.toml").exists() and not secrets_file.exists()
    assert [line.split()[0] for line in run(home, "profiles", "list").stdout.splitlines()] == ["beta", "gamma"]
    r = run(home, "profiles", "delete", "alpha", "--yes")
    assert r.returncode == 2 and "no profile named alpha" in r.stderr
    r = run(home, "profiles", "show", "alpha")
    assert r.returncode == 2 and "no such profile" in r.stderr


def test_profiles_show_masks_plain_secrets(home):
    plain = {k: v for k, v in SECRETS.items() if v.isascii() and '"' not in v}
    saved_profile(home, "alpha", profile_text(address="10.0.0.1", port=2201, secrets=False)
                  + "[secrets]\n" + "".join(f'{k} = "{v}"\n' for k, v in plain.items()))
    r = run(home, "profiles", "show", "alpha")
    assert r.returncode == 0, r.stderr
    assert str(home / "config/profiles/alpha.toml") in r.stdout
    assert 'address = "10.0.0.1"' in r.stdout and "port = 2201" in r.stdout
    assert r.stdout.count("********") == len(plain) == 2
    no_secret(r.stdout, r.stderr)


def test_profiles_show_masks_secrets_with_quotes(home):
    saved_profile(home, "alpha", profile_text(address="10.0.0.1", port=2201))
    r = run(home, "profiles", "show", "alpha")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("********") == len(SECRETS)
    no_secret(r.stdout, r.stderr)


def test_profiles_new(home):
    r = run(home, "profiles", "new", "site", "--host", "10.0.0.7", "--user", "deploy", "--port", "2222")
    assert r.returncode == 0, r.stderr
    path = home / "config/profiles/site.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "deploy@10.0.0.7:2222" in run(home, "profiles", "list").stdout
    before = path.read_bytes()
    r = run(home, "profiles", "new", "site", "--host", "10.0.0.8")
    assert r.returncode == 2 and "exists" in r.stderr and path.read_bytes() == before
    r = run(home, "profiles", "new", "bad", "--host", "not a host!")
    assert r.returncode == 2 and "[host.address]" in r.stderr
    assert not (home / "config/profiles/bad.toml").exists()
    no_traceback(r)


# --------------------------------------------------------------------------- apply (no host needed)


@pytest.mark.parametrize("mutate,key,reason", [
    (lambda t: t.replace("port = 22", "prot = 22"), "[host.prot]", "unknown key 'prot'"),
    (lambda t: t.replace("port = 22", 'port = "ssh"'), "[host.port]", "must be a whole number"),
    (lambda t: t.replace('address = "10.199.3.254"\n', ""), "[host.address]", "no host address"),
    (lambda t: t + "[bogus]\n", "[bogus]", "unknown key 'bogus'"),
    (lambda t: t.replace("[host]", "[host"), None, "not valid TOML"),
])
def test_apply_broken_profile_exit_2(home, tmp_path, mutate, key, reason):
    path = tmp_path / "broken.toml"
    path.write_text(mutate(profile_text()))
    before = path.read_bytes()
    r = run(home, "apply", str(path), "--yes")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(path) in r.stderr and reason in r.stderr
    if key:
        assert key in r.stderr
    no_traceback(r)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.toml", "home"]


def test_apply_missing_profile_exit_2(home):
    r = run(home, "apply", "nowhere", "--yes")
    assert r.returncode == 2 and "no such profile" in r.stderr
    no_traceback(r)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_apply_closed_port_exit_3(home, tmp_path):
    port = _free_port()
    path = tmp_path / "closed.toml"
    path.write_text(profile_text(address="127.0.0.1", port=port))
    r = run(home, "apply", str(path), "--yes", timeout=30)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.duration < 15
    assert f"127.0.0.1:{port}" in r.stderr and "connection refused" in r.stderr
    no_traceback(r)
    no_secret(r.stdout, r.stderr)


def test_apply_unreachable_exit_3(home, tmp_path):
    path = tmp_path / "far.toml"
    path.write_text(profile_text(address="10.199.3.254"))
    r = run(home, "apply", str(path), "--yes", timeout=40)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.duration < 15
    # Dropped packets: "no answer"; behind a transparent proxy that accepts every TCP
    # connection (as on some build machines): no SSH banner.  Either way a plain message.
    assert "10.199.3.254" in r.stderr
    assert "Could not connect" in r.stderr or "SSH handshake with" in r.stderr
    assert r.stderr.startswith("stack-tui: ")
    no_traceback(r)


def test_apply_broken_secrets_file_exit_2(home, tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(profile_text(address="127.0.0.1", port=_free_port(), secrets=False))
    sf = tmp_path / "site.secrets.toml"
    sf.write_text('admin_password = "unterminated\n')
    sf.chmod(0o600)
    before = sf.read_bytes()
    r = run(home, "apply", str(path), "--yes")
    assert r.returncode == 2 and str(sf) in r.stderr and "not a valid secrets file" in r.stderr
    assert sf.read_bytes() == before
    no_traceback(r)


def test_apply_control_char_secret_from_env_exit_2(home, tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(profile_text(address="127.0.0.1", port=_free_port(), secrets=False))
    r = run(home, "apply", str(path), "--yes", env={"STACK_TUI_ADMIN_PASSWORD": "a\tb"})
    assert r.returncode == 2 and "control character" in r.stderr and "admin_password" in r.stderr
    no_traceback(r)


@pytest.mark.parametrize("content", [b"{ half a json", json.dumps({"version": 99, "steps": {}}).encode()])
def test_apply_bad_state_file_exit_2_and_untouched(home, tmp_path, content):
    path = tmp_path / "st.toml"
    path.write_text(profile_text(address="127.0.0.1", port=_free_port()))
    state = home / "state" / "runs" / "st_127.0.0.1.json"
    state.parent.mkdir(parents=True)
    state.write_bytes(content)
    r = run(home, "apply", str(path), "--yes")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(state) in r.stderr and "untouched" in r.stderr
    assert state.read_bytes() == content
    no_traceback(r)


def test_apply_generates_missing_secrets_beside_the_profile(home, tmp_path):
    path = tmp_path / "gen.toml"
    path.write_text(profile_text(address="127.0.0.1", port=_free_port(), secrets=False))
    before = path.read_bytes()
    r = run(home, "apply", str(path), "--yes")
    assert r.returncode == 3
    sf = tmp_path / "gen.secrets.toml"
    assert stat.S_IMODE(sf.stat().st_mode) == 0o600
    import tomllib

    values = tomllib.loads(sf.read_text())
    assert {"admin_password", "keystone_db_password", "glance_password"} <= set(values)
    assert path.read_bytes() == before
    for v in values.values():
        if isinstance(v, str):
            assert v not in r.stdout and v not in r.stderr


# --------------------------------------------------------------------------- apply against a real host


@pytest.mark.e2e
def test_apply_unknown_host_key_refused_without_flag(home, tmp_path, sandbox_factory):
    info = sandbox_factory(f"tr-{os.getpid()}")   # test_transport's host when it ran (no 2nd boot)
    path = tmp_path / "box.toml"
    path.write_text(profile_text(address=info.address, secrets=False).replace(
        "[openstack]", f'user = "root"\nkey_file = "{info.key_file}"\n[openstack]'))
    r = run(home, "apply", str(path), "--yes", timeout=60)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "not known yet" in r.stderr and "SHA256:" in r.stderr and "--accept-new-host-key" in r.stderr
    no_traceback(r)
    assert not (home / "config" / "known_hosts").exists() or info.address not in (
        home / "config" / "known_hosts").read_text()

    # With the flag the key is trusted; an unknown --from is then a usage error (exit 2)
    # before any step runs.
    r = run(home, "apply", str(path), "--yes", "--accept-new-host-key", "--from", "no.such.step")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "unknown step id 'no.such.step'" in r.stderr and "stack-tui plan" in r.stderr
    assert info.address in (home / "config" / "known_hosts").read_text()
    r = run(home, "apply", str(path), "--yes", "--only", "nope")
    assert r.returncode == 2 and "unknown phase 'nope'" in r.stderr
    no_traceback(r)


@pytest.mark.parametrize("command", ["apply", "check", "verify"])
def test_corrupted_state_hint_names_a_flag_the_command_takes(home, tmp_path, command):
    """Every command that reads the run state refuses a corrupted one with a hint; each flag
    the hint names is one that command accepts, and it gets the command past the state."""
    import re

    path = tmp_path / "st.toml"
    path.write_text(profile_text(address="127.0.0.1", port=_free_port()))
    state = home / "state" / "runs" / "st_127.0.0.1.json"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"{ half a json")
    r = run(home, command, str(path))
    assert r.returncode == 2 and str(state) in r.stderr and state.exists(), r.stderr
    flags = re.findall(r"--[a-z][a-z-]+", r.stderr)
    assert flags, r.stderr
    for flag in flags:
        r = run(home, command, str(path), flag)
        assert "unrecognized arguments" not in r.stderr, (flag, r.stderr)
        assert r.returncode == 3 and "corrupted" not in r.stderr, (flag, r.stderr)  # on to connecting
        no_traceback(r)
