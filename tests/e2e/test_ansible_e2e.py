"""`stack-tui export ansible`, run with the real `ansible-playbook` against a fresh Debian 13
sandbox host with every service but Horizon (the compute cloud on one host): the cloud
answers as after `stack-tui apply` (a token as admin and demo, the image listed, seen with
keystoneauth1 and glanceclient from outside; the test server ACTIVE with a floating IP, seen
with the `openstack` CLI, that answers ping from the host), and a second run changes nothing
(changed=0 in the PLAY RECAP).

Ansible is installed once into a venv of its own under the test cache, never into the
project's dependencies.  Secrets come from the environment (STACK_TUI_<NAME>); the host key
is checked against the keys stack-tui trusts (the sandbox's own, read from its rootfs)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

from tests import cloud

pytestmark = pytest.mark.e2e

ANSIBLE = "11.13.0"   # ansible-core 2.18: controller Python 3.11-3.13, Debian 13's 3.13 target
# Every character a shell, YAML, Jinja, oslo.config or a URL could trip on; '%' and '@'
# are refused in database passwords (the migrations' configparser), and the export takes
# only ASCII ones.
SECRETS = {
    "admin_password": "Ad'm\"in $(id) % {{ x }} \\`;#",
    "demo_password": "de'mo\"$(touch /tmp/pwned) %s ;# {%",
    "keystone_db_password": "ks'db\"$PATH\\`;# {{x }}",
    "glance_db_password": "gl'db\"$1 \\ `x`;# {{",
    "glance_password": "gl'an\"ce $$ % \\ ;# @",
    "rabbit_password": "ra'bb\"it $USER %d \\`;#",
    "placement_db_password": "pl'db\"$(id) \\`;# {{ z",
    "placement_password": "pl'ac\"e $HOME % \\ ;# @ {%",
    "neutron_db_password": "ne'db\"$1 \\`;# ]] [[",
    "neutron_password": "ne'ut\"ron $$ %2F / ? & \\ ;#",
    "metadata_secret": "me'ta\"data $(reboot) \\`;# {{ x }}",
    "nova_db_password": "no'db\"$PATH \\`;# }}",
    "nova_password": "no'va\" $USER % @ / : \\ ;# {#",
}


def ansible_venv() -> Path:
    """The pinned Ansible in a venv of its own under the cache (made once)."""
    venv = Path(os.environ["STACK_TUI_CACHE_DIR"]) / f"ansible-{ANSIBLE}"
    stamp = venv / ".stack-tui-ok"
    if stamp.exists() and (venv / "bin" / "ansible-playbook").exists():
        return venv
    subprocess.run(["rm", "-rf", str(venv)], check=True)
    for argv in (["/usr/bin/python3", "-m", "venv", str(venv)],
                 [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                  "--disable-pip-version-check", f"ansible=={ANSIBLE}"]):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    stamp.write_text(ANSIBLE + "\n")
    return venv


def playbook(venv: Path, dest: Path, *extra: str, timeout: float = 1200
             ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACK_TUI_")}
    env.update({f"STACK_TUI_{k.upper()}": v for k, v in SECRETS.items()})
    env.update({"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "ANSIBLE_FORCE_COLOR": "0",
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CONFIG": str(dest / "ansible.cfg")})
    return subprocess.run([str(venv / "bin" / "ansible-playbook"), "site.yml", *extra],
                          cwd=dest, capture_output=True, text=True, timeout=timeout, env=env)


@contextlib.contextmanager
def argv_watch(info):
    """Every process's command line on the host, read twice a second while the block runs."""
    seen: list[str] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(cloud.ssh(info, "ps -eo args", timeout=20).stdout)
            stop.wait(0.5)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        t.join(30)


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP: host -> {ok, changed, unreachable, failed, ...}."""
    out = {}
    text = output.split("PLAY RECAP", 1)[-1]
    for m in re.finditer(r"^(\S+)\s+:\s+(.*)$", text, re.M):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


@pytest.fixture(scope="module")
def exported(sandbox_factory, stack_home, tmp_path_factory):
    from tui.cli import write_sandbox_profile
    from tui.tasks import profile as pr
    from tui.tasks import sandbox
    from tui.tasks.sandbox import guest

    venv = ansible_venv()
    info = sandbox_factory(f"ans13-{os.getpid()}", release="13")
    sandbox.trust_own_host_keys(info)   # the keys this machine made, read from the rootfs
    image = guest.guest_image(info)     # the bootable test guest (cached per release)
    path = write_sandbox_profile(info, name="ans13")
    prof = pr.load("ans13")
    prof.openstack.services = [s for s in pr.SERVICES if s != "horizon"]
    prof.image.file, prof.image.url = str(image), ""
    pr.save(prof)
    dest = tmp_path_factory.mktemp("ansible-export")
    r = cloud.cli("export", "ansible", "ans13", str(dest), "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    yield {"info": info, "venv": venv, "dest": dest, "export": r, "profile": path,
           "image": image}
    sandbox_factory.remove(info.name)


def clouds_yaml(info, tmp_path: Path) -> Path:
    """A clouds.yaml (0600) for admin and demo, as a user of the exported cloud writes one."""
    import yaml

    def entry(user: str) -> dict:
        return {"auth": {"auth_url": f"http://{info.address}:5000/v3", "username": user,
                         "password": SECRETS[f"{user}_password"], "project_name": user,
                         "user_domain_name": "Default", "project_domain_name": "Default"},
                "region_name": "RegionOne", "identity_api_version": 3}
    path = tmp_path / "clouds.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({"clouds": {"admin": entry("admin"), "demo": entry("demo")}}))
    return path


def server_answers(info, tmp_path: Path) -> None:
    """The playbook's test server, seen with the real `openstack` CLI: ACTIVE on this host,
    a floating IP on the provider network that answers ping from the host (as the engine's
    verification pings it); the hypervisor listed."""
    import json

    clouds = clouds_yaml(info, tmp_path)
    r = cloud.openstack(clouds, "demo", "server", "show", "stack-tui-verify", "-f", "json")
    assert r.returncode == 0, r.stderr[-2000:]
    srv = json.loads(r.stdout)
    assert srv["status"] == "ACTIVE", srv
    addrs = json.dumps(srv["addresses"])
    fips = re.findall(r"172\.24\.4\.\d+", addrs)
    assert len(fips) == 1, addrs
    ping = cloud.ssh(info, f"ping -c 3 -W 2 {fips[0]}", timeout=30)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    r = cloud.openstack(clouds, "admin", "hypervisor", "list", "-f", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 1, r.stdout + r.stderr


def test_export_runs_installs_and_second_run_changes_nothing(exported, tmp_path):
    info, venv, dest = exported["info"], exported["venv"], exported["dest"]
    assert "ansible-playbook site.yml" in exported["export"].stdout
    text = "\n".join(p.read_text(errors="replace") for p in dest.rglob("*") if p.is_file())
    for value in SECRETS.values():
        assert value not in text

    with argv_watch(info) as seen:
        first = playbook(venv, dest, timeout=3000)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-2000:]
    assert len(seen) > 10
    for value in SECRETS.values():   # no_log: never in Ansible's output nor the host's argv
        assert value not in first.stdout + first.stderr
        assert not any(value in ps for ps in seen), "a secret showed in a command line"
    r = cloud.ssh(info, "stat -c '%a %U' /root/admin-openrc.sh /root/demo-openrc.sh")
    assert r.stdout.split("\n")[:2] == ["600 root", "600 root"], r.stdout + r.stderr

    # The engine's verification, from outside with the real clients.
    assert cloud.token(info.address, "admin", SECRETS["admin_password"], "admin")
    assert cloud.token(info.address, "demo", SECRETS["demo_password"], "demo")
    md5 = hashlib.md5(Path(exported["image"]).read_bytes()).hexdigest()
    imgs = cloud.images(info.address, SECRETS["admin_password"])
    assert [(i["name"], i["status"], i["checksum"]) for i in imgs] == [("cirros", "active", md5)]

    server_answers(info, tmp_path)

    second = playbook(venv, dest)
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-2000:]
    hosts = recap(second.stdout)
    assert hosts, second.stdout[-3000:]
    changed = [ln for ln in second.stdout.splitlines() if ln.startswith("changed:")]
    for host, counts in hosts.items():
        assert counts["changed"] == 0 and counts["failed"] == 0, (host, counts, changed)


def test_vault_export_is_read_by_ansible_vault(exported, tmp_path):
    """The vault file the export writes opens with the real ansible-vault and the password."""
    venv = exported["venv"]
    pwfile = tmp_path / "vault-pass"
    pwfile.write_text("s3cret vault pass\n")
    pwfile.chmod(0o600)
    dest = tmp_path / "vaulted"
    env = {f"STACK_TUI_{k.upper()}": v for k, v in SECRETS.items()}
    r = cloud.cli("export", "ansible", "ans13", str(dest), "--vault-password-file", str(pwfile),
                  env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    vault = dest / "group_vars" / "all" / "vault.yml"
    assert vault.stat().st_mode & 0o777 == 0o600
    for value in SECRETS.values():
        assert value not in vault.read_text()
    v = subprocess.run([str(venv / "bin" / "ansible-vault"), "view", "--vault-password-file",
                        str(pwfile), str(vault)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stderr
    import yaml

    class Loader(yaml.SafeLoader):
        pass
    Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
    data = yaml.load(v.stdout, Loader=Loader)
    assert data["stack_tui_admin_password"] == SECRETS["admin_password"]
    assert data["stack_tui_glance_db_password"] == SECRETS["glance_db_password"]
