"""README's first command on a user's fresh server: `bash try.sh root@HOST` from a copy of the
repository opens the installer's screens.

The sandbox host is what a fresh Debian server is (debootstrap minbase + openssh + python3,
plus a few base tools): no pip, no python3-venv, no tmux, PEP 668 in force.  The test checks
that first (so it cannot pass on a host that already has what setup.sh must install), copies
the tracked files of this checkout into it over SSH (no .venv, no .git), logs in with a real
terminal (tmux on this machine runs `ssh -tt`, as a user would), runs try.sh pointed at the
host itself, waits for the Host screen, quits with ctrl+q and checks the distribution's python
was left alone.

The base rootfs has a few packages beyond minbase + openssh + python3 (systemd-sysv, dbus,
iproute2, procps, ca-certificates, curl, netbase, sudo).  None of them is what setup.sh must
provide: a real server has them or setup.sh installs them anyway (ca-certificates comes with
python3-pip-whl, iproute2 is in setup.sh's list), and setup.sh calls neither curl nor sudo as
root.  So the test asserts the absence of what matters instead of purging those.

Cost: apt inside the host reaches Debian's archive through the sandbox's NAT, its .debs come
from and go back to the shared apt cache; pip reaches PyPI with no cache of its own (about
20-30 s from try.sh to the Host screen, 30-45 s a release with the boot).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = "/root/stack-tui"
SETUP_TIMEOUT = 1200.0      # apt-get update + install + pip install, cold caches
PANE = ("-x", "120", "-y", "40")

# What a fresh server must NOT have (else the test proves nothing) and must have.
PRISTINE_CHECK = r"""
set -u
bad=""
for p in python3-venv python3-pip tmux git debootstrap systemd-container nftables qemu-utils; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    bad="$bad package:$p"
  fi
done
python3 -c 'import ensurepip' 2>/dev/null && bad="$bad ensurepip-importable"
python3 -m pip --version >/dev/null 2>&1 && bad="$bad system-pip"
ls /usr/lib/python3*/EXTERNALLY-MANAGED >/dev/null 2>&1 || bad="$bad no-PEP668-marker"
echo "PRISTINE:${bad:- ok}"
"""

# After setup: the distribution's python is as it was, everything lives in ./.venv.
UNTOUCHED_CHECK = r"""
set -u
bad=""
ls /usr/lib/python3*/EXTERNALLY-MANAGED >/dev/null 2>&1 || bad="$bad PEP668-marker-removed"
/usr/bin/python3 -c 'import pip' 2>/dev/null && bad="$bad pip-in-system-python"
for n in pip textual paramiko; do
  [ -e /usr/lib/python3/dist-packages/$n ] && bad="$bad system-$n"
done
for d in /usr/local/lib/python3*/dist-packages; do
  [ -d "$d" ] && [ -n "$(ls -A "$d")" ] && bad="$bad packages-in:$d"
done
dpkg-query -W -f='${Status}' python3-pip 2>/dev/null | grep -q 'install ok installed' && bad="$bad python3-pip"
# pointed at a server, try.sh installs none of the throwaway-host tools
for p in debootstrap systemd-container nftables qemu-utils tmux; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' && bad="$bad sandbox-tool:$p"
done
[ -x __CHECKOUT__/.venv/bin/stack-tui ] || bad="$bad no-venv-stack-tui"
echo "UNTOUCHED:${bad:- ok}"
""".replace("__CHECKOUT__", CHECKOUT)


def _ssh_argv(info, *, tty: bool = False) -> list[str]:
    return ["ssh", *(["-tt"] if tty else []), "-i", info.key_file, "-p", str(info.port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", f"{info.user}@{info.address}"]


def _ssh(info, script: str, *, stdin: bytes | None = None, timeout: float = 120) -> str:
    """Run ``script`` on the host (fed to bash), or with ``stdin`` as the remote command fed that."""
    proc = subprocess.run([*_ssh_argv(info), "bash", "-s"] if stdin is None else
                          [*_ssh_argv(info), script],
                          input=script.encode() if stdin is None else stdin,
                          capture_output=True, timeout=timeout)
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"ssh to the sandbox failed (exit {proc.returncode}):\n{out}"
    return out


def _tracked_tar() -> bytes:
    """A tar of this checkout's tracked files as they are now (what a copy of the repository has)."""
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True,
                           check=True).stdout.split(b"\0")
    present = b"\0".join(n for n in names if n and (ROOT / n.decode()).exists())
    return subprocess.run(["tar", "-C", str(ROOT), "--null", "-T", "-", "-cf", "-"],
                          input=present, capture_output=True, check=True).stdout


def _trust_local_cas(info) -> None:
    """This machine's own extra CA certificates (e.g. a TLS-inspecting egress proxy), trusted
    inside too, as they would be on a server behind the same proxy: public certificates only."""
    local = Path("/usr/local/share/ca-certificates")
    certs = sorted(p.name for p in local.glob("*.crt")) if local.is_dir() else []
    if not certs:
        return
    tar = subprocess.run(["tar", "-C", str(local), "-cf", "-", *certs], capture_output=True,
                         check=True).stdout
    _ssh(info, "tar -x -C /usr/local/share/ca-certificates && update-ca-certificates >/dev/null",
         stdin=tar)


class Tmux:
    """A tmux server of this test's own (its own socket), one window."""

    def __init__(self, socket: Path):
        self.base = ["tmux", "-S", str(socket), "-f", "/dev/null"]

    def start(self, command: str) -> None:
        subprocess.run([*self.base, "new-session", "-d", *PANE, "-s", "try", command], check=True,
                       env=dict(os.environ, TERM="xterm-256color"))

    def screen(self) -> str:
        proc = subprocess.run([*self.base, "capture-pane", "-p", "-J", "-S", "-60", "-t", "try"],
                              capture_output=True, text=True, errors="replace")
        return proc.stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "try", *keys], check=True)

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


def _wait_for(tmux: Tmux, done, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux.screen()
        if done(screen):
            return screen
        if "TRY-EXIT=" in screen:   # try.sh ended before the expected screen
            break
        time.sleep(2)
    pytest.fail(f"{what} did not happen (waited up to {timeout:.0f} s). The terminal showed:\n{screen}",
                pytrace=False)


def _host_screen(screen: str) -> bool:
    """The wizard's Host screen, filled from the profile try.sh made."""
    return all(text in screen for text in ("stack-tui — Host", "1. Host", "Address", "127.0.0.1",
                                           "Log in with"))


# What most READMEs tell a newcomer to do first; on a fresh Debian it fails (no ensurepip) and
# leaves a .venv whose python has no pip.
FAILED_VENV = f"""
cd {CHECKOUT} && ! python3 -m venv .venv >/dev/null 2>&1 && [ -x .venv/bin/python ] &&
! .venv/bin/python -c 'import pip' 2>/dev/null && echo BROKEN-VENV
"""


def _try_on_fresh_host(sandbox_factory, release: str, tmp_path: Path, before: str = "") -> dict:
    """Boot a fresh host, copy the checkout, run ``before`` there, then try.sh up to the Host
    screen and out again with ctrl+q; returns the seconds each phase took."""
    times: dict[str, float] = {}
    t0 = time.monotonic()
    name = f"try{release}-{os.getpid()}"
    info = sandbox_factory(name, release)
    tmux = Tmux(tmp_path / "tmux.sock")
    try:
        times["boot"] = time.monotonic() - t0
        out = _ssh(info, PRISTINE_CHECK)
        assert "PRISTINE: ok" in out, f"the sandbox is not a fresh server: {out}"

        t = time.monotonic()
        _ssh(info, f"mkdir -p {CHECKOUT} && tar -x -C {CHECKOUT}", stdin=_tracked_tar())
        _trust_local_cas(info)
        times["copy"] = time.monotonic() - t
        if before:
            out = _ssh(info, before)
            assert "BROKEN-VENV" in out, f"the failed venv attempt did not leave a broken .venv: {out}"

        t = time.monotonic()
        remote = f"cd {CHECKOUT} && bash try.sh root@127.0.0.1; echo TRY-EXIT=$?; sleep 600"
        ssh_cmd = " ".join(shlex.quote(a) for a in [*_ssh_argv(info, tty=True), remote])
        tmux.start(ssh_cmd)
        screen = _wait_for(tmux, _host_screen, SETUP_TIMEOUT, "The installer's Host screen")
        times["try.sh to Host screen"] = time.monotonic() - t
        assert "Profile name    server" in screen, screen

        tmux.keys("C-q")
        screen = _wait_for(tmux, lambda s: "TRY-EXIT=" in s, 60, "Quitting with ctrl+q")
        assert "TRY-EXIT=0" in screen, f"stack-tui did not exit cleanly:\n{screen}"
        assert "Traceback" not in screen, screen

        out = _ssh(info, UNTOUCHED_CHECK)
        assert "UNTOUCHED: ok" in out, f"setup changed the system python: {out}"
    finally:
        tmux.kill()
        sandbox_factory.remove(name)
    times["total"] = time.monotonic() - t0
    return times


def _report(what: str, times: dict) -> None:
    print(f"\n{what}: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))


def test_try_opens_the_installer_on_a_fresh_server(sandbox_factory, release, tmp_path):
    _report(f"try.sh on Debian {release}", _try_on_fresh_host(sandbox_factory, release, tmp_path))


def test_try_recovers_from_a_failed_venv_attempt(sandbox_factory, tmp_path):
    """setup.sh makes again a .venv without pip instead of failing on it (on the first release
    of STACK_TUI_RELEASES only: the path is the same on both)."""
    from tui.tasks import sandbox

    first = os.environ.get("STACK_TUI_RELEASES", sandbox.DEFAULT_RELEASE).split(",")[0].strip()
    times = _try_on_fresh_host(sandbox_factory, first or sandbox.DEFAULT_RELEASE, tmp_path,
                               before=FAILED_VENV)
    _report(f"try.sh after a failed venv on Debian {first}", times)
