"""`stack-tui export ansible PROFILE DIR`: an inventory and a playbook (a role per service)
that perform the profile's plan with Ansible's idempotent modules.

Secrets never go into the exported files in plain text: without a vault password each is
read from the environment at run time (``lookup('env', 'STACK_TUI_<NAME>')``, the variables
stack-tui itself reads); with one they go into group_vars/all/vault.yml, encrypted with it."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ..errors import Failure
from ..fsutil import atomic_write
from ..secrets import DESCRIPTIONS, env_name
from ..services import compute_node
from . import roles_api, roles_base, roles_cloud, roles_compute, roles_hosts, source, vault

def _prepare(profile) -> dict:
    return (roles_hosts.prepare_hosts(profile) if roles_hosts.wanted(profile)
            else roles_base.prepare(profile))


# Every role in the engine's order; the service ones written when the profile selects them.
ROLES = {"prepare": _prepare, "mariadb": roles_base.mariadb_role,
         "rabbitmq": roles_base.rabbitmq_role, "memcached": roles_base.memcached_role,
         "keystone": roles_api.keystone_role, "glance": roles_api.glance_role,
         "placement": roles_compute.placement_role, "tunnel": roles_hosts.tunnel_role,
         "neutron": roles_compute.neutron_role, "nova": roles_compute.nova_role,
         "compute_node": roles_hosts.compute_node_role, "computes": roles_hosts.computes_role,
         "cloud": roles_cloud.cloud_role, "finish": roles_api.finish_role}
# The roles of the compute-only hosts' play and of the controller's after it (several hosts)
COMPUTE_ROLES = ("tunnel", "compute_node")
AFTER_ROLES = ("computes", "cloud", "finish")
PLAYBOOK = "site.yml"
TASK_LIMIT = 1800   # seconds, as prepare's apt-get (no task of the play may wait forever)


class ExportError(Failure):
    """The export cannot be written; what, why and what to do."""


def refusals(profile) -> list[str]:
    """Why this profile cannot be exported (empty: it can)."""
    out = []
    extra = [s for s in profile.openstack.services if s not in source.COVERED]
    if extra:
        out.append(f"the Ansible export does not cover {', '.join(extra)} yet (it covers "
                   f"{', '.join(source.COVERED)}); untick {'it' if len(extra) == 1 else 'them'}"
                   " in the profile, or install with stack-tui apply")
    compute = [s for s in source.COMPUTE if s in profile.openstack.services]
    ctrl = profile.controller
    if compute and (ctrl is None or "compute" not in ctrl.roles):
        out.append(f"the Ansible export installs {', '.join(compute)} with a controller that "
                   "computes too (a controller without the compute role is installed with "
                   "stack-tui apply)")
    if compute and compute_node.compute_hosts(profile) and \
            not {"nova", "neutron"} <= set(profile.openstack.services):
        out.append("the compute hosts need Nova and Neutron: select both, or remove those "
                   "hosts")
    idle = [h.name for h in profile.hosts if not h.roles]
    if idle:
        out.append(f"hosts without a role ({', '.join(idle)}) are not exported")
    if profile.openstack.platform not in ("auto", source.PLATFORM.id):
        out.append(f"the profile forces platform {profile.openstack.platform}; the Ansible "
                   f"export is written for {source.PLATFORM.id} only")
    img = profile.image
    if "glance" in profile.openstack.services and img.upload and img.file and \
            not Path(img.file).expanduser().is_file():
        out.append(f"the image file {img.file} does not exist")
    return out


def inventory(profile) -> dict:
    """Groups controller and compute from the profile's hosts."""
    def host_vars(h) -> dict:
        v = {"ansible_host": h.address, "ansible_port": h.port, "ansible_user": h.user,
             "stack_tui_mgmt_address": h.mgmt_address or h.address}
        if h.key_file:
            v["ansible_ssh_private_key_file"] = str(Path(h.key_file).expanduser())
        return v

    groups: dict = {"controller": {"hosts": {}}, "compute": {"hosts": {}}}
    for h in profile.hosts:
        for role in ("controller", "compute"):
            if role in h.roles:
                groups[role]["hosts"][h.name] = host_vars(h)
    return {"all": {"children": groups}}


def ssh_args() -> str:
    """Host keys checked against the user's known_hosts and stack-tui's own (the keys
    stack-tui was told to trust); an unknown or changed key stops the run."""
    from .. import paths

    files = f"~/.ssh/known_hosts {paths.known_hosts_file()}"
    return f"-o 'UserKnownHostsFile={files}' -o StrictHostKeyChecking=yes"


def common_vars(profile) -> dict:
    ep = profile.endpoint_host
    return {
        "ansible_ssh_common_args": ssh_args(),
        "stack_tui_profile": profile.name,
        "stack_tui_region": profile.openstack.region,
        "stack_tui_endpoint_host": ep,
        # where every host's services reach the controller (its inventory address)
        "stack_tui_controller_mgmt": (profile.controller or profile.host).mgmt_address
        or (profile.controller or profile.host).address,
        "stack_tui_identity_url": roles_api._identity_url(profile),
        "stack_tui_os_auth": {
            "auth_url": roles_api._identity_url(profile).rstrip("/"),
            "username": "admin", "password": "{{ stack_tui_admin_password }}",
            "project_name": "admin", "user_domain_name": "Default",
            "project_domain_name": "Default"},
        **({"stack_tui_os_auth_demo": {
            "auth_url": roles_api._identity_url(profile).rstrip("/"),
            "username": "demo", "password": "{{ stack_tui_demo_password }}",
            "project_name": "demo", "user_domain_name": "Default",
            "project_domain_name": "Default"}} if profile.openstack.demo else {}),
    }


def secret_vars_env(profile) -> dict:
    return {source.var(n): "{{ lookup('env', '%s') }}" % env_name(n)
            for n in source.needed_secrets(profile)}


class _Unsafe(str):
    """A value Ansible must never template (a password may hold "{{")."""


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # every task written out in full, no &id001 anchors
        return True


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(_Unsafe, lambda d, v: d.represent_scalar("!unsafe", str(v), style="'"))


def dump(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True,
                     default_flow_style=False)


def role_names(profile) -> list[str]:
    """Every role the export writes, in the engine's order (services/__init__.py REGISTRY,
    the compute-only hosts and their discovery after the controller's services, the cloud
    objects and test boot after them, finish last)."""
    return list(dict.fromkeys(r for play in plays(profile) for r in play["roles"]))


def plays(profile) -> list[dict]:
    """(hosts, roles) of each play: one host, or a controller alone, one play; with
    compute-only hosts: prepare on every host at once (each installs its own packages at the
    same time), the controller's services, then the compute-only hosts' (the tunnel on
    Debian 13 first on each), then on the controller their discovery, the cloud and finish."""
    several = roles_hosts.wanted(profile)
    tunnel = several and roles_hosts.tunnel_wanted(profile)

    def selected(name: str) -> bool:
        if name == "cloud":
            return roles_cloud.wanted(profile)
        if name == "tunnel":
            return tunnel
        if name in COMPUTE_ROLES or name == "computes":
            return several
        return name in ("prepare", "finish") or name in profile.openstack.services

    names = [n for n in ROLES if selected(n)]
    if not several:
        return [{"hosts": "controller", "roles": names}]
    # the tunnel is the controller's too (before its Neutron, as the engine's neutron.tunnel)
    services = [n for n in names if n != "prepare" and (n == "tunnel" or n not in COMPUTE_ROLES)
                and n not in AFTER_ROLES]
    return [{"hosts": "controller:compute", "roles": ["prepare"]},
            {"hosts": "controller", "roles": services},
            {"hosts": "compute:!controller", "roles": [n for n in COMPUTE_ROLES if n in names]},
            {"hosts": "controller", "roles": [n for n in AFTER_ROLES if n in names]}]


PLAY_NAMES = {
    "controller:compute": "Every host of profile {name}: platform, host name, packages "
                          "(from stack-tui)",
    "compute:!controller": "Compute hosts of profile {name} (from stack-tui)"}
CONTROLLER_PLAYS = ("OpenStack control plane of profile {name} (from stack-tui)",
                    "The compute hosts join the cloud of profile {name} (from stack-tui)")


def site(profile) -> list[dict]:
    out, ctrl_plays = [], 0
    for play in plays(profile):
        if play["hosts"] == "controller":
            name, hosts = CONTROLLER_PLAYS[ctrl_plays], [profile.host]
            ctrl_plays += 1
        else:
            name = PLAY_NAMES[play["hosts"]]
            hosts = [h for h in profile.hosts if play["hosts"] == "controller:compute"
                     or "controller" not in h.roles]
        out.append({"name": name.format(name=profile.name), "hosts": play["hosts"],
                    "become": any(h.user != "root" for h in hosts),
                    # every task's time limit: the engine's longest (a package transaction)
                    "timeout": TASK_LIMIT,
                    "module_defaults": {"group/openstack.cloud.openstack": {
                        "auth": "{{ stack_tui_os_auth }}",
                        "region_name": "{{ stack_tui_region }}"}},
                    "roles": play["roles"]})
    return out


KILL_AFTER = 10     # seconds between timeout's TERM and its KILL
COMMAND, SHELL = "ansible.builtin.command", "ansible.builtin.shell"


def bounded(tasks: list[dict]) -> list[dict]:
    """``tasks`` with every command and shell task run under timeout(1) on the host.

    The play's ``timeout`` ends Ansible's wait for a task, but nothing promises that the
    command on the host ends with it (without a terminal nothing hangs up on it), so each
    one carries its own limit there, as every command the engine runs does.  A shell task
    becomes a command task running its shell under timeout: the script is one argument,
    so nothing in it needs quoting again."""
    limit = ["timeout", "-k", str(KILL_AFTER), str(TASK_LIMIT)]
    out = []
    for task in tasks:
        task = dict(task)
        for key in ("block", "rescue", "always"):
            if key in task:
                task[key] = bounded(task[key])
        if SHELL in task:
            args = task.pop(SHELL)
            args = dict(args) if isinstance(args, dict) else {"cmd": args}
            script, shell = args.pop("cmd"), args.pop("executable", "/bin/sh")
            task[COMMAND] = {"argv": [*limit, shell, "-c", script], **args}
        elif COMMAND in task:
            args = task[COMMAND]
            if isinstance(args, str):
                args = {"cmd": args}
            args = dict(args)
            if "argv" in args:
                args["argv"] = [*limit, *args["argv"]]
            elif not args["cmd"].startswith("timeout "):
                args["cmd"] = " ".join(limit) + " " + args["cmd"]
            task[COMMAND] = args
        out.append(task)
    return out


def files_for(profile, secrets: dict[str, str] | None, vault_password: str | None) -> dict:
    """Every exported file: relative path -> (text, mode)."""
    out: dict[str, tuple[str, int]] = {
        "ansible.cfg": ("[defaults]\ninventory = inventory.yml\nroles_path = roles\n"
                        "filter_plugins = filter_plugins\nstdout_callback = default\n"
                        "interpreter_python = /usr/bin/python3\n"
                        # modules on the host's python3 stdin: fewer SSH round trips, and no
                        # module file (with its arguments) written to the host's disk
                        "\n[ssh_connection]\npipelining = True\n", 0o644),
        "inventory.yml": (dump(inventory(profile)), 0o644),
        PLAYBOOK: (dump(site(profile)), 0o644),
        "group_vars/all/main.yml": (dump(common_vars(profile)), 0o644),
        "filter_plugins/stack_tui.py": (filter_plugin(), 0o644),
    }
    if vault_password is None:
        out["group_vars/all/secrets.yml"] = (
            "# Each secret from the environment at run time (STACK_TUI_<NAME>), never stored\n"
            + dump(secret_vars_env(profile)), 0o644)
    else:
        values = {source.var(n): _Unsafe(secrets[n]) for n in source.needed_secrets(profile)}
        out["group_vars/all/vault.yml"] = (vault.encrypt(dump(values), vault_password), 0o600)
    for name in role_names(profile):
        r = ROLES[name](profile)
        base = f"roles/{name}"
        out[f"{base}/tasks/main.yml"] = (dump(bounded(r["tasks"])), 0o644)
        if r["handlers"]:
            out[f"{base}/handlers/main.yml"] = (dump(bounded(r["handlers"])), 0o644)
        if r["vars"]:
            out[f"{base}/vars/main.yml"] = (dump(r["vars"]), 0o644)
        for tname, body in r["templates"].items():
            # openrc templates hold secrets once rendered: only on the host, 0600
            out[f"{base}/templates/{tname}"] = (body, 0o644)
    return out


def filter_plugin() -> str:
    return ('"""Filters of the stack-tui export: the engine\'s own quoting of values in '
            'oslo.config files."""\n\n\n'
            + source.oslo_value_source() + "\n\n"
            "def db_url_password(value):\n"
            "    \"\"\"A password inside a SQLAlchemy URL in an oslo.config file (db_url).\"\"\"\n"
            "    return value.replace('%', '%25').replace('@', '%40').replace('$', '$$')\n\n\n"
            "def url_quote(value):\n"
            "    \"\"\"A password inside another URL (transport_url): every character but "
            "letters,\n    digits and '_.-~' percent-encoded, as the engine does.\"\"\"\n"
            "    import urllib.parse\n\n"
            "    return urllib.parse.quote(value, safe='')\n\n\n"
            "class FilterModule:\n"
            "    def filters(self):\n"
            "        return {'stack_tui_oslo_value': oslo_value,\n"
            "                'stack_tui_db_url_password': db_url_password,\n"
            "                'stack_tui_url_quote': url_quote}\n")


def check_dest(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"{dest} exists and is not a directory.", "",
                          "give a new or empty directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise ExportError(f"{dest} is not empty.",
                          "the export would mix its files with what is there",
                          "give a new or empty directory, or add --force to write over it")


def export(profile, dest: Path, *, force: bool = False, secrets: dict[str, str] | None = None,
           vault_password: str | None = None) -> list[Path]:
    """Write the export into ``dest``; the paths written."""
    why = refusals(profile)
    if why:
        raise ExportError(f"Cannot export profile {profile.name} to Ansible.",
                          "; ".join(why), "change the profile, then export again")
    if vault_password is not None:
        missing = [n for n in source.needed_secrets(profile) if not (secrets or {}).get(n)]
        if missing:
            raise ExportError("Secrets missing for the vault file: " + ", ".join(
                f"{n} ({DESCRIPTIONS.get(n, n)})" for n in missing) + ".", "",
                "set them (STACK_TUI_<NAME> or the profile's secrets file)")
    dest = Path(dest)
    check_dest(dest, force)
    files = files_for(profile, secrets, vault_password)
    # --force over an export of the other kind: its secrets file would still be read
    for stale in ("group_vars/all/secrets.yml", "group_vars/all/vault.yml"):
        if stale not in files and (dest / stale).is_file():
            (dest / stale).unlink()
    written = []
    for rel, (text, mode) in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        atomic_write(path, text.encode("utf-8"), mode=mode)
        os.chmod(path, mode)
        written.append(path)
    return written


def run_command(dest: Path, vault: bool) -> str:
    extra = " --vault-password-file VAULT_PASSWORD_FILE" if vault else ""
    return f"cd {dest} && ansible-playbook {PLAYBOOK}{extra}"
