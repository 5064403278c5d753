"""Helpers the end-to-end tests use to look at a sandbox and its cloud from outside.

Only public clients: keystoneauth1, python-glanceclient, the `openstack` CLI,
the `ssh` CLI.  Nothing here goes through stack-tui's own transport.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Every password of the e2e runs holds the characters the brief names.
HOSTILE = {
    "admin_password": "Ad'm\"in $HOME \\ `id`; #x Ünïcødé",
    "demo_password": "de'mo\"$(touch /tmp/pwned) \\;# ñ",
    "keystone_db_password": "ks'db\"$PATH\\`;# é",
    "glance_db_password": "gl'db\"$1 \\ `x`;# ø",
    "glance_password": "gl'an\"ce $$ \\ ;# ß",
    "rabbit_password": "ra'bb\"it $USER \\`;# å",
}


def write_secrets(profile_path: Path, values: dict[str, str]) -> Path:
    from tui.tasks.secrets import write_secrets_file

    path = profile_path.with_name(profile_path.stem + ".secrets.toml")
    write_secrets_file(path, values)
    return path


def cli(*args: str, timeout: float = 1500, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `stack-tui` command line."""
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          cwd=ROOT)  # this checkout's code, whatever is pip-installed


def ssh(info, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a command on the sandbox with the plain ssh client (the test's own view)."""
    return subprocess.run(
        ["ssh", "-q", "-i", info.key_file, "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=5", f"root@{info.address}", command],
        capture_output=True, text=True, timeout=timeout)


def session(address: str, user: str, password: str, project: str):
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v3

    auth = v3.Password(auth_url=f"http://{address}:5000/v3", username=user, password=password,
                       project_name=project, user_domain_name="Default",
                       project_domain_name="Default")
    return ks_session.Session(auth=auth, timeout=30)


def token(address: str, user: str, password: str, project: str) -> str:
    return session(address, user, password, project).get_token()


def images(address: str, password: str) -> list[dict]:
    from glanceclient import Client

    sess = session(address, "admin", password, "admin")
    return [dict(i) for i in Client("2", session=sess, endpoint=f"http://{address}:9292").images.list()]


def counts(address: str, password: str) -> dict[str, int]:
    """How many of each Keystone/Glance thing exist (for 'no duplicates' checks)."""
    sess = session(address, "admin", password, "admin")
    base = f"http://{address}:5000/v3"
    out = {}
    for coll in ("projects", "users", "roles", "services", "endpoints", "regions"):
        out[coll] = len(sess.get(f"{base}/{coll}").json()[coll])
    out["images"] = len(images(address, password))
    return out


def openstack(clouds_yaml: Path, cloud: str, *args: str,
              timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml)}
    for k in list(env):
        if k.startswith("OS_") and k != "OS_CLIENT_CONFIG_FILE":
            env.pop(k)
    # the openstack CLI of the test venv (python-openstackclient is a test dependency)
    exe = Path(sys.executable).parent / "openstack"
    return subprocess.run([str(exe if exe.exists() else "openstack"), "--os-cloud", cloud, *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd="/")


def wait_until(pred, timeout: float, interval: float = 0.3) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` seconds have passed (then one last try)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())


def rerun_changes_nothing(name: str, limit: float, timeout: float = 900) -> float:
    """`stack-tui apply NAME` again: every step already done, nothing skipped, under ``limit``
    seconds; the seconds it took."""
    import time

    t0 = time.monotonic()
    r = cli("apply", name, "--yes", timeout=timeout)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-3000:]
    assert "OK: 0 done," in r.stdout and " 0 skipped" in r.stdout, r.stdout[-3000:]
    assert took < limit, f"a re-run that changes nothing took {took:.1f} s"
    return took


def leaked_secrets(profile_name: str, shown: str, at_least: int) -> list[str]:
    """The profile's secret values (plain or URL-quoted) found in ``shown``, shortened."""
    import tomllib
    import urllib.parse

    from tui.tasks import paths

    secrets_file = paths.profiles_dir() / f"{profile_name}.secrets.toml"
    values = [v for v in tomllib.loads(secrets_file.read_text()).values() if isinstance(v, str)]
    assert len(values) >= at_least
    return [v[:2] + "..." for v in values for form in {v, urllib.parse.quote(v, safe="")}
            if form in shown]


def log_digest(infos, services=("nova", "neutron"), lines: int = 12) -> str:
    """The last ERROR / WARNING / Traceback lines of each host's OpenStack logs, read from
    its root on this machine: what an e2e failure prints, so a failure on CI (where only the
    test output is seen) says what the services said."""
    import re

    # (uWSGI says "DAMN ! worker 1 (pid: N) died, killed by signal 11" when an API process dies)
    pick = re.compile(r" (ERROR|WARNING|CRITICAL) |Traceback|Timeout|timed out|DAMN|died")
    out = []
    for info in infos:
        if info is None:
            continue
        for root in (Path(info.dir) / "upper", Path(info.rootfs)):
            if (root / "var" / "log").is_dir():
                break
        for svc in services:
            for path in sorted((root / "var" / "log" / svc).glob("*.log")):
                try:
                    hits = [ln for ln in path.read_text(errors="replace").splitlines()
                            if pick.search(ln)]
                except OSError:
                    continue
                if hits:
                    out.append(f"--- {info.name}:{path.name} (last {min(lines, len(hits))} of "
                               f"{len(hits)} error/warning lines)")
                    out.extend(ln[:400] for ln in hits[-lines:])
    return "\n".join(out) or "(no error or warning lines in the hosts' logs)"
