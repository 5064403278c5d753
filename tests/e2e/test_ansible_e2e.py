"""`stack-tui export ansible`, run with the real `ansible-playbook` against a fresh group of
two Debian 13 sandbox hosts (`stack-tui sandbox up --hosts 2`: a controller that computes and
a compute-only host) with every service but Horizon: the cloud answers as after `stack-tui
apply` (a token as admin and demo, the image listed, seen with keystoneauth1 and glanceclient
from outside; two hypervisors, a test server ACTIVE on each host with a floating IP, seen with
the `openstack` CLI, that answers ping from the controller), and a second run changes nothing
on either host (changed=0 in the PLAY RECAP).

Ansible is installed once into a venv of its own under the test cache, never into the
project's dependencies.  Secrets come from the environment (STACK_TUI_<NAME>); the host key
is checked against the keys stack-tui trusts (the sandboxes' own, read from their rootfs)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import threading
import time
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
    from tui.tasks import profile as pr
    from tui.tasks import sandbox
    from tui.tasks.sandbox import guest

    venv = ansible_venv()
    name = f"ans{os.getpid() % 100000}"
    hosts = [f"{name}-{k}" for k in (1, 2)]
    try:
        t0 = time.monotonic()
        up = cloud.cli("sandbox", "up", "--hosts", "2", "--name", name, "--release", "13",
                       timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        infos = [sandbox._load_info(h) for h in hosts]
        for info in infos:
            sandbox.trust_own_host_keys(info)   # the keys this machine made, from the rootfs
        image = guest.guest_image(infos[0])     # the bootable test guest (cached per release)
        prof = pr.load(name)
        assert [h.roles for h in prof.hosts] == [["controller", "compute"], ["compute"]], \
            prof.hosts
        prof.openstack.services = [s for s in pr.SERVICES if s != "horizon"]
        prof.image.file, prof.image.url = str(image), ""
        pr.save(prof)
        dest = tmp_path_factory.mktemp("ansible-export")
        r = cloud.cli("export", "ansible", name, str(dest), "--force")
        assert r.returncode == 0, r.stdout + r.stderr
        yield {"name": name, "hosts": hosts, "infos": infos, "info": infos[0], "venv": venv,
               "dest": dest, "export": r, "image": image, "boot": time.monotonic() - t0}
    finally:   # the whole group, whatever happened
        cloud.cli("sandbox", "down", "--name", name, timeout=300)


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


def servers_answer(info, hosts: list[str], tmp_path: Path) -> None:
    """The playbook's test servers, seen with the real `openstack` CLI: one ACTIVE on each
    host (stack-tui-verify-<host>, admin's, as the engine boots them on several hosts), a
    floating IP each on the provider network that answers ping from the controller (as the
    engine's verification pings them); both hypervisors listed."""
    import json

    clouds = clouds_yaml(info, tmp_path)
    r = cloud.openstack(clouds, "admin", "hypervisor", "list", "-f", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(h["Hypervisor Hostname"] for h in json.loads(r.stdout)) == hosts, r.stdout
    r = cloud.openstack(clouds, "admin", "server", "list", "--long", "-f", "json")
    assert r.returncode == 0, r.stderr[-2000:]
    servers = {s["Name"]: s for s in json.loads(r.stdout)}
    assert sorted(servers) == [f"stack-tui-verify-{h}" for h in hosts], servers
    for h in hosts:
        srv = servers[f"stack-tui-verify-{h}"]
        assert (srv["Status"], srv["Host"]) == ("ACTIVE", h), srv
        addrs = json.dumps(srv["Networks"])
        fips = re.findall(r"172\.24\.4\.\d+", addrs)
        assert len(fips) == 1, addrs
        ping = cloud.ssh(info, f"ping -c 3 -W 2 {fips[0]}", timeout=30)
        assert ping.returncode == 0, (h, ping.stdout + ping.stderr)


def test_export_runs_installs_and_second_run_changes_nothing(exported, tmp_path):
    info, venv, dest = exported["info"], exported["venv"], exported["dest"]
    hosts, infos = exported["hosts"], exported["infos"]
    assert "ansible-playbook site.yml" in exported["export"].stdout
    text = "\n".join(p.read_text(errors="replace") for p in dest.rglob("*") if p.is_file())
    for value in SECRETS.values():
        assert value not in text

    t0 = time.monotonic()
    with argv_watch(infos[0]) as seen, argv_watch(infos[1]) as seen_compute:
        first = playbook(venv, dest, timeout=3000)
    took = time.monotonic() - t0
    if first.returncode != 0:
        pytest.fail(first.stdout[-8000:] + first.stderr[-2000:]
                    + "\n\nThe hosts' logs:\n" + cloud.log_digest(infos))
    assert len(seen) > 10 and len(seen_compute) > 10
    for value in SECRETS.values():   # no_log: never in Ansible's output nor the hosts' argv
        assert value not in first.stdout + first.stderr
        assert not any(value in ps for ps in seen + seen_compute), \
            "a secret showed in a command line"
    r = cloud.ssh(info, "stat -c '%a %U' /root/admin-openrc.sh /root/demo-openrc.sh")
    assert r.stdout.split("\n")[:2] == ["600 root", "600 root"], r.stdout + r.stderr

    # The engine's verification, from outside with the real clients.
    assert cloud.token(info.address, "admin", SECRETS["admin_password"], "admin")
    assert cloud.token(info.address, "demo", SECRETS["demo_password"], "demo")
    md5 = hashlib.md5(Path(exported["image"]).read_bytes()).hexdigest()
    imgs = cloud.images(info.address, SECRETS["admin_password"])
    assert [(i["name"], i["status"], i["checksum"]) for i in imgs] == [("cirros", "active", md5)]

    servers_answer(info, hosts, tmp_path)

    second = playbook(venv, dest)
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-2000:]
    counted = recap(second.stdout)
    assert sorted(counted) == hosts, second.stdout[-3000:]
    changed = [ln for ln in second.stdout.splitlines() if ln.startswith("changed:")]
    for host, counts in counted.items():
        assert counts["changed"] == 0 and counts["failed"] == 0, (host, counts, changed)
    print(f"2-host export run: {took:.1f} s (group boot {exported['boot']:.1f} s)")


def test_vault_export_is_read_by_ansible_vault(exported, tmp_path):
    """The vault file the export writes opens with the real ansible-vault and the password."""
    venv = exported["venv"]
    pwfile = tmp_path / "vault-pass"
    pwfile.write_text("s3cret vault pass\n")
    pwfile.chmod(0o600)
    dest = tmp_path / "vaulted"
    env = {f"STACK_TUI_{k.upper()}": v for k, v in SECRETS.items()}
    r = cloud.cli("export", "ansible", exported["name"], str(dest), "--vault-password-file",
                  str(pwfile), env=env)
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
