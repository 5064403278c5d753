"""The disposable test host itself: boot, reuse, users, teardown, isolation."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tui.tasks import hostkeys, sandbox


# --------------------------------------------------------------------------- helpers


def ssh(info, *command, user="root", known_hosts=None, stdin=None, timeout=30):
    """Run a command on the sandbox with the ssh CLI (accept-new into a temp known_hosts)."""
    known_hosts = known_hosts or Path(info.dir) / "test_known_hosts"
    argv = [
        "ssh", "-F", "/dev/null", "-i", info.key_file, "-p", str(info.port),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
        f"{user}@{info.address}", "--", *command,
    ]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)


def nothing_left(index: int) -> list[str]:
    """Names of system resources of slot ``index`` that still exist."""
    n = sandbox._names(index)
    left = []
    if n["netns"] in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split():
        left.append(f"netns {n['netns']}")
    if subprocess.run(["ip", "link", "show", n["veth"]], capture_output=True).returncode == 0:
        left.append(f"veth {n['veth']}")
    if subprocess.run(["nft", "list", "table", "ip", n["table"]], capture_output=True).returncode == 0:
        left.append(f"nft table {n['table']}")
    procs = subprocess.run(["pgrep", "-f", "--", f"--machine={n['machine']}( |$)"], capture_output=True, text=True)
    for pid in procs.stdout.split():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z":
            left.append(f"nspawn process {pid}")
    if sandbox._claim_dir(index).exists():
        left.append(f"claim {sandbox._claim_dir(index)}")
    for cg in sandbox._cgroup_dirs(index):
        if cg.exists():
            left.append(f"cgroup {cg}")
    return left


# --------------------------------------------------------------------------- unit (no root)


def test_index_maps_to_short_names_and_a_private_slash30():
    n = sandbox._names(1)
    assert (n["host_address"], n["address"], n["subnet"]) == ("10.199.0.5", "10.199.0.6", "10.199.0.4/30")
    top = sandbox._names(sandbox.MAX_INDEX)
    assert top["address"] == "10.199.0.242"
    for value in (top["netns"], top["veth"], top["machine"]):
        assert len(value) < 15


@pytest.mark.parametrize("name", ["sandbox\n", "sandbox\r", "sand box", "../x", "", "-x",
                                  "a" * 65])
def test_a_sandbox_name_is_refused_whole_a_trailing_newline_included(name):
    from tui.tasks.sandbox.base import SandboxError, _check_name

    with pytest.raises(SandboxError, match="Invalid sandbox name"):
        _check_name(name)
    _check_name("sandbox-13.a_b")


def test_require_root_tools_names_the_apt_command(monkeypatch):
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)
    monkeypatch.setattr(sandbox.shutil, "which", lambda tool: None if tool == "debootstrap" else "/bin/x")
    with pytest.raises(sandbox.SandboxError) as err:
        sandbox.require_root_tools()
    assert "debootstrap" in str(err.value)
    assert sandbox.APT_COMMAND in str(err.value)
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    with pytest.raises(sandbox.SandboxError, match="root"):
        sandbox.require_root_tools()


def test_claims_are_exclusive_and_stale_ones_are_reclaimed(tmp_path, monkeypatch):
    # The claims module owns CLAIM_ROOT and calls _clean_index for a stale slot.
    monkeypatch.setattr(sandbox.claims, "CLAIM_ROOT", tmp_path / "claims")
    cleaned = []
    monkeypatch.setattr(sandbox.claims, "_clean_index", lambda i, log: cleaned.append(i))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert sandbox._claim_index(a, None) == 1
    assert sandbox._claim_index(b, None) == 2
    assert sandbox._claim_owner(1) == str(a)
    a.rmdir()  # owner gone -> slot 1 is stale
    c = tmp_path / "c"
    c.mkdir()
    assert sandbox._claim_index(c, None) == 1
    assert cleaned == [1]
    assert sandbox._owned_claims(c) == [1]


# --------------------------------------------------------------------------- e2e


@pytest.mark.e2e
def test_up_gives_a_booted_host_reachable_over_ssh(sandbox_host):
    info = sandbox_host
    assert ssh(info, "true").returncode == 0, ssh(info, "true").stderr
    state = ssh(info, "systemctl", "is-system-running").stdout.strip()
    assert state in ("running", "degraded")
    assert ssh(info, "hostname").stdout.strip() == "stackhost"
    assert ssh(info, "getent", "hosts", "stackhost").stdout.split()[0] == info.address
    # The apt cache is the shared, bind-mounted one.
    mounts = ssh(info, "findmnt", "-n", "-o", "TARGET", "/var/cache/apt/archives").stdout.strip()
    assert mounts == "/var/cache/apt/archives"

    d = Path(info.dir)
    for secret in (Path(info.key_file), d / "info.json"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert json.loads((d / "info.json").read_text())["address"] == info.address
    img = subprocess.run(["qemu-img", "info", "--output=json", info.image_file], capture_output=True, text=True)
    assert json.loads(img.stdout)["format"] == "qcow2"

    # The new host key is NOT trusted by stack-tui: the caller has to accept it.
    assert hostkeys.lookup(info.address, info.port) == {}

    st = sandbox.status(info.name)
    assert st and all(st[k] for k in ("netns", "veth", "nft_table", "alive", "rootfs", "claim"))
    if info.rootfs_mode == "overlay":
        assert st["mounts"] == [info.rootfs]
    assert info.name in sandbox.list_sandboxes()


@pytest.mark.e2e
def test_own_host_keys_are_the_ones_sshd_offers(sandbox_host, tmp_path, monkeypatch):
    """`stack-tui sandbox up` trusts the keys it generated, read from the sandbox's files:
    they must be exactly what sshd presents, so the connection is verified, not assumed."""
    from tui.tasks.transport import Transport

    info = sandbox_host
    monkeypatch.setenv("STACK_TUI_HOME", str(tmp_path))  # a known_hosts of this test's own
    monkeypatch.setenv("HOME", str(tmp_path))            # and no ~/.ssh/known_hosts either
    assert hostkeys.lookup(info.address, info.port) == {}
    prints = sandbox.trust_own_host_keys(info)
    scanned = subprocess.run(["ssh-keyscan", "-p", str(info.port), info.address],
                             capture_output=True, text=True, timeout=30).stdout
    offered = {ln.split()[1] for ln in scanned.splitlines() if ln and not ln.startswith("#")}
    assert offered and offered <= set(hostkeys.lookup(info.address, info.port)), (offered, prints)
    t = Transport(info.address, port=info.port, user="root", key_file=info.key_file)
    try:
        assert t.run("echo verified").stdout == "verified\n"  # no callback, no accept-new
    finally:
        t.close()


@pytest.mark.e2e
def test_up_again_is_quick_and_idempotent(sandbox_host, sandbox_factory):
    start = time.monotonic()
    again = sandbox_factory(sandbox_host.name)
    took = time.monotonic() - start
    assert took < 15, f"second up() took {took:.1f} s"
    assert again.to_dict() == sandbox_host.to_dict()
    assert ssh(again, "true").returncode == 0


@pytest.mark.e2e
def test_add_user_with_password_and_sudo(sandbox_host):
    password = "s3cret-Pw-for-test"
    sandbox.add_user(sandbox_host, "tester", password)
    who = ssh(sandbox_host, "id", "-un", user="tester")
    assert who.returncode == 0, who.stderr
    assert who.stdout.strip() == "tester"
    ok = ssh(sandbox_host, "sudo -S -p '' id -u", user="tester", stdin=password + "\n")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "0"
    assert ssh(sandbox_host, "sudo", "-k", "-n", "true", user="tester").returncode != 0
    wrong = ssh(sandbox_host, "sudo -k -S -p '' true", user="tester", stdin="wrong\n")
    assert wrong.returncode != 0
    # Idempotent: again with a new password.
    sandbox.add_user(sandbox_host, "tester", password + "2")
    ok = ssh(sandbox_host, "sudo -k -S -p '' true", user="tester", stdin=password + "2\n")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.e2e
def test_down_removes_everything_and_up_again_is_fast(sandbox_factory):
    name = f"e2e-cycle-{os.getpid()}"
    info = sandbox_factory(name)
    assert ssh(info, "true").returncode == 0
    # Pretend we had trusted this address before: a rebuilt sandbox must not look like a changed key.
    import paramiko

    hostkeys.remember(info.address, 22, paramiko.Ed25519Key.from_private_key_file(info.key_file))
    index = info.index

    start = time.monotonic()
    assert sandbox.down(name) is True
    took_down = time.monotonic() - start
    assert took_down < 20, f"down() took {took_down:.1f} s"
    assert sandbox.status(name) is None
    assert nothing_left(index) == []
    assert not Path(info.dir).exists()
    assert sandbox._mounts_under(Path(info.dir)) == []
    assert name not in sandbox.list_sandboxes()
    assert sandbox.down(name) is False
    # The shared apt cache survived the rootfs removal.
    assert sandbox._apt_cache().is_dir()

    start = time.monotonic()
    info2 = sandbox_factory(name)
    took_up = time.monotonic() - start
    assert took_up < 15, f"up() after down() took {took_up:.1f} s"
    assert hostkeys.lookup(info2.address, 22) == {}
    assert ssh(info2, "systemctl", "is-system-running").stdout.strip() in ("running", "degraded")


@pytest.mark.e2e
def test_up_cleans_a_crashed_instance(sandbox_factory):
    import signal

    name = f"e2e-crash-{os.getpid()}"
    info = sandbox_factory(name)
    # Simulate a crash: kill nspawn and the container hard, leave everything else behind.
    leader = sandbox._container_leader(info.pid)
    os.killpg(info.pid, signal.SIGKILL)
    if leader:
        os.kill(leader, signal.SIGKILL)
    assert sandbox._wait(lambda: not sandbox._pid_alive(info.pid), 10)
    st = sandbox.status(name)
    assert st and st["netns"] and not st["alive"]

    info2 = sandbox_factory(name)
    assert info2.pid != info.pid
    assert ssh(info2, "true").returncode == 0


_CHILD = textwrap.dedent(
    """
    import json, sys
    from tui.tasks import sandbox
    if sys.argv[1] == "up":
        print(json.dumps(sandbox.up(sys.argv[2]).to_dict()))
    else:
        print(json.dumps(sandbox.down(sys.argv[2])))
    """
)


@pytest.mark.e2e
def test_two_runs_with_different_homes_do_not_collide(sandbox_factory, tmp_path):
    root = Path(__file__).resolve().parent.parent
    homes = [tmp_path / "home-a", tmp_path / "home-b"]

    def child(action, home, name="twin"):
        env = dict(os.environ, STACK_TUI_HOME=str(home), PYTHONPATH=str(root))
        return subprocess.Popen([sys.executable, "-c", _CHILD, action, name], env=env, cwd=root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    procs = [child("up", h) for h in homes]
    try:
        results = [p.communicate(timeout=180) for p in procs]
        for p, (out, err) in zip(procs, results):
            assert p.returncode == 0, err
        infos = [sandbox.SandboxInfo.from_dict(json.loads(out)) for out, _ in results]
        assert infos[0].index != infos[1].index
        assert infos[0].address != infos[1].address
        for info in infos:
            assert ssh(info, "hostname").stdout.strip() == "stackhost"
    finally:
        downs = [child("down", h) for h in homes]
        for p in downs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err


def test_removing_a_tree_without_waiting_frees_the_name_at_once_and_deletes_it(tmp_path):
    """A throwaway host's files: renamed into the trash at once (so the same name can be
    made again), deleted by a detached rm; a plain removal still waits."""
    from tests.cloud import wait_until
    from tui.tasks.sandbox import base

    root = tmp_path / "sandbox" / "box"
    for i in range(200):
        (root / "upper" / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (root / "upper" / f"d{i % 7}" / f"f{i}").write_bytes(b"x" * 512)
    base._remove_tree(root, wait=False)
    assert not root.exists()
    trash = root.parent / base.TRASH
    assert wait_until(lambda: not any(trash.iterdir()), 30, 0.1), list(trash.iterdir())
    root.mkdir()
    (root / "f").write_text("x")
    base._remove_tree(root)  # waits
    assert not root.exists()
