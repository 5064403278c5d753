"""What the Ansible export takes from the engine's own service modules: packages, debconf
answers, the config keys each service writes, the Apache files, and the secrets a profile
needs.  The service functions run on a stand-in context whose secrets are markers and
whose management address is an Ansible variable, so a value derived here is the engine's
value with the secret put in at run time (see ``secret_expr``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import platforms
from ..services import glance, host_packages, keystone, mariadb, neutron, nova, placement, prepare

# The services this export covers, in install order; any other selected one is refused.
COVERED = ("mariadb", "rabbitmq", "memcached", "keystone", "glance", "placement", "neutron",
           "nova")
# Of those, the compute cloud: exported for a controller that computes, alone or with
# compute-only hosts (Debian 13: Open vSwitch, the br-phy tunnel between them).
COMPUTE = ("placement", "neutron", "nova")
# The platform the exported playbook is written for (and checks on each host before anything).
PLATFORM = platforms.PLATFORMS["debian-13"]
MGMT = "{{ stack_tui_mgmt_address }}"
_MARK = re.compile(r"\[\[secret:([a-z_]+)\]\]")
# The same marker inside a URL, percent-encoded by the engine (transport_url's password)
_URL_MARK = re.compile(r"%5B%5Bsecret%3A([a-z_]+)%5D%5D")


def var(name: str) -> str:
    """The Ansible variable holding a secret."""
    return f"stack_tui_{name}"


class _Secrets(dict):
    def __missing__(self, name: str) -> str:
        return f"[[secret:{name}]]"


@dataclass
class _Ctx:
    """The part of the engine's Context the services' settings functions read."""
    profile: object
    secrets: _Secrets = field(default_factory=_Secrets)
    facts: dict = field(default_factory=lambda: {"mgmt_address": MGMT,
                                                 "platform": PLATFORM.id})
    cache: dict = field(default_factory=dict)
    # on a compute-only host: empty, so the controller's address is the profile's (the
    # inventory's stack_tui_mgmt_address of the controller)
    controller_facts: dict = field(default_factory=dict)


def context(profile) -> _Ctx:
    return _Ctx(profile)


def compute_view(profile):
    """The profile as seen from its first compute-only host (services.compute_node's
    settings are built on it; the host's own name becomes ``{{ inventory_hostname }}``)."""
    from ..services import compute_node

    return profile.on(compute_node.compute_hosts(profile)[0])


HOST_NAME = "{{ inventory_hostname }}"


def _named_here(view, settings: dict) -> dict:
    """``settings`` of a compute view with the view's host name replaced by the Ansible
    host's (the profile's host names are the inventory's)."""
    return {k: (HOST_NAME if k == ("DEFAULT", "host") and v == view.host.name else v)
            for k, v in settings.items()}


def compute_nova_settings(profile) -> list[dict]:
    """nova.conf of a compute-only host (compute_node's nova_config: nova.settings for a
    compute node)."""
    view = compute_view(profile)
    return ini_items(_named_here(view, nova.settings(context(view), controller=False)))


def compute_neutron_files(profile) -> list[tuple[str, list[dict], str]]:
    """(path, settings, group) of the files compute_node's neutron_config writes."""
    from ..inifile import one_line
    from ..services import compute_node

    view = compute_view(profile)
    return [(path, ini_items(_named_here(view, one_line(path, values))), group)
            for path, values, group in compute_node._neutron_files(context(view))]


def secret_expr(value: str, *, url: bool = False) -> str:
    """``value`` (one setting, as the engine writes it) with each secret marker replaced by
    the Jinja expression that gives it: oslo.config quoting (``oslo_value``), and in a
    database URL the escapes of ``db_url`` first.  The filters ship in filter_plugins/."""
    def sub(m: re.Match) -> str:
        f = "stack_tui_db_url_password" if url else "stack_tui_oslo_value"
        return "{{ " + var(m.group(1)) + " | " + f + " }}"

    def sub_quoted(m: re.Match) -> str:  # quote(safe=""): nothing oslo.config would read
        return "{{ " + var(m.group(1)) + " | stack_tui_url_quote }}"
    return _MARK.sub(sub, _URL_MARK.sub(sub_quoted, value))


def has_secret(value) -> bool:
    return isinstance(value, str) and bool(_MARK.search(value) or _URL_MARK.search(value))


def packages(profile) -> list[str]:
    """The controller's packages, as `stack-tui apply` installs them (services.host_packages)."""
    return host_packages(profile, PLATFORM)


def debconf() -> list[dict]:
    """prepare.DEBCONF as (package, question, vtype, value) items."""
    out = []
    for line in prepare.DEBCONF.splitlines():
        pkg, question, vtype, value = line.split()
        out.append({"name": pkg, "question": question, "vtype": vtype, "value": value})
    return out


def ini_items(settings: dict, *, url_keys=(("database", "connection"),)) -> list[dict]:
    """One item per (section, key) -> value; ``value`` None means the key is removed."""
    out = []
    for (section, key), value in settings.items():
        item = {"section": section, "option": key}
        if value is None:
            item["state"] = "absent"
        else:
            item["value"] = secret_expr(value, url=(section, key) in url_keys)
            item["state"] = "present"
        item["secret"] = has_secret(value)
        out.append(item)
    return out


def keystone_settings(profile) -> list[dict]:
    return ini_items(keystone._keystone_values(context(profile)))


def glance_settings(profile) -> list[dict]:
    return ini_items(glance._glance_values(context(profile)))


def placement_settings(profile) -> list[dict]:
    return ini_items(placement._settings(context(profile)),
                     url_keys=(("placement_database", "connection"),))


def nova_settings(profile) -> list[dict]:
    return ini_items(nova.settings(context(profile)),
                     url_keys=(("database", "connection"), ("api_database", "connection")))


def neutron_files(profile) -> list[tuple[str, list[dict], str]]:
    """(path, settings, group) of every file Neutron's config step writes."""
    from ..inifile import one_line

    return [(path, ini_items(one_line(path, values)), group)
            for path, values, group in neutron._files(context(profile))]


def placement_apache(profile) -> dict:
    """Placement's WSGI script and vhost (processes from the host's facts, at most 4)."""
    from ..services.catalog import wsgi_vhost

    lay = placement.layout(PLATFORM)
    vhost = wsgi_vhost(title="Placement", port=placement.PORT, group="placement-api",
                       script=placement.WSGI, user="placement",
                       processes="{{ [4, stack_tui_wsgi_processes | int] | min }}",  # type: ignore[arg-type]
                       server_name=profile.endpoint_host, log_dir=PLATFORM.apache_log_dir,
                       log="placement")
    return {"script": (placement.WSGI, placement.wsgi_body(PLATFORM)),
            "vhost": (lay.vhost, vhost), "enable": lay.vhost_enable,
            "distro_unit": lay.distro_service}


def mariadb_conf(profile) -> str:
    return mariadb._mariadb_conf(context(profile))


def keystone_apache(profile) -> dict:
    """The Keystone WSGI script, vhost (processes from the host's facts) and ServerName."""
    from ..services.catalog import wsgi_vhost

    ep = profile.endpoint_host
    vhost = wsgi_vhost(title="Keystone (identity)", port=5000, group="keystone-public",
                       script=keystone.WSGI_KEYSTONE, user="keystone",
                       processes="{{ stack_tui_wsgi_processes }}",  # type: ignore[arg-type]
                       server_name=ep, log_dir=PLATFORM.apache_log_dir, log="keystone")
    return {
        "script": (keystone.WSGI_KEYSTONE, keystone.wsgi_body(PLATFORM)),
        "vhost": (keystone.layout(PLATFORM).vhost, vhost),
        "servername": (PLATFORM.servername_conf, f"# Written by stack-tui\nServerName {ep}\n"),
        "distro_unit": keystone.distro_unit(PLATFORM),
    }


def needed_secrets(profile) -> list[str]:
    return profile.needed_secrets()


def db_secrets(profile) -> list[str]:
    return [secret for _, secret in profile.databases()]


def oslo_value_source() -> str:
    """The engine's own oslo.config quoting, for the exported filter plugin."""
    import inspect

    from .. import inifile

    return inspect.getsource(inifile.oslo_value)
