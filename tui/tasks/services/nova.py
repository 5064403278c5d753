"""Nova (compute), controller and compute on the same host: service user, endpoints, its three
databases, nova.conf, schemas and cells, libvirt for QEMU in or out of a container, the
services, and host discovery."""

from __future__ import annotations

import re

from .. import inifile
from ..engine import Phase, Step, StepError
from ..platforms import Platform
from .base import PerPlatform, Port, Rule, Secret, Service, SummaryLine
from .catalog import (CONNECTION_CLOSE, UWSGI, api_host, authtoken, endpoints_ok,
                      ensure_endpoints, lines_ok, messaging, service_auth, service_url, uwsgi_ok,
                      uwsgi_run, with_lines)
from .common import one_line_settings
from .common import (LOOK, SERVICE_ROLES, SQL, db_url, ensure_service, ensure_user, ep,
                     ini_target, manage, marker_check, marker_set, mgmt, put_file, q, root_sql,
                     service_ok, sql_literal, url_host, wait_http)

NOVA_CONF = "/etc/nova/nova.conf"
NOVA_COMPUTE_CONF = "/etc/nova/nova-compute.conf"
QEMU_CONF = "/etc/libvirt/qemu.conf"
PORT = 8774
VNC_PORT = 6080
DATABASES = ("nova_api", "nova", "nova_cell0")
PACKAGES = PerPlatform(
    # nova-compute-kvm pulls qemu-system-x86 only (nova-compute-qemu pulls every architecture);
    # the virt_type (kvm or qemu) is set in nova-compute.conf either way.
    deb=("nova-api", "nova-conductor", "nova-scheduler", "nova-consoleproxy", "nova-compute",
         "nova-compute-kvm"),
    rpm=("openstack-nova-api", "openstack-nova-conductor", "openstack-nova-scheduler",
         "openstack-nova-novncproxy", "openstack-nova-compute"))


def compute_url(ctx) -> str:
    return service_url(ctx, PORT, "/v2.1")


# -- Keystone -----------------------------------------------------------------------------

def _user_check(ctx) -> bool:
    return ensure_user(ctx, "nova", ctx.secrets["nova_password"], "service", SERVICE_ROLES,
                       check_only=True)


def _user_run(ctx) -> None:
    ensure_user(ctx, "nova", ctx.secrets["nova_password"], "service", SERVICE_ROLES)


def _endpoints_check(ctx) -> bool:
    return endpoints_ok(ctx, "compute", compute_url(ctx))


def _endpoints_run(ctx) -> None:
    ensure_endpoints(ctx, "nova", "compute", "OpenStack Compute", compute_url(ctx))


# -- databases: nova (made by mariadb.databases), nova_api and nova_cell0 for the same user --

def _extra_dbs_check(ctx) -> bool:
    r = root_sql(ctx, "SHOW DATABASES;\nSELECT CONCAT(Db,'@',Host) FROM mysql.db WHERE User='nova';\n")
    have = set(r.stdout.split())
    return all({d, f"{d}@localhost", f"{d}@%"} <= have for d in ("nova_api", "nova_cell0"))


def _extra_dbs_run(ctx) -> None:
    sql = []
    for d in ("nova_api", "nova_cell0"):
        sql.append(f"CREATE DATABASE IF NOT EXISTS `{d}`;")
        for host in ("'localhost'", "'%'"):
            sql.append(f"GRANT ALL PRIVILEGES ON `{d}`.* TO {sql_literal('nova')}@{host};")
    root_sql(ctx, "\n".join(sql) + "\n")


# -- nova.conf ------------------------------------------------------------------------------

def _db(ctx, name: str) -> str:
    return db_url(ctx, "nova", "nova_db_password").replace("/nova?", f"/{name}?")


def settings(ctx, controller: bool = True) -> dict:
    """nova.conf's settings: the controller's (APIs, databases, scheduler, conductor, the
    metadata proxy, and nova-compute beside them), or without ``controller`` a compute
    node's (nova-compute only: no database, no token validation; its name in Nova is the
    profile's host name, and every address but its own is the controller's)."""
    m = mgmt(ctx)
    v = {**messaging(ctx), ("DEFAULT", "my_ip"): m}
    if controller:
        v.update({
            ("api", "auth_strategy"): "keystone",
            ("api_database", "connection"): _db(ctx, "nova_api"),
            ("database", "connection"): _db(ctx, "nova"),
            **authtoken(ctx, "nova", "nova_password"),
        })
    else:
        v[("DEFAULT", "host")] = ctx.profile.host.name
    v.update({
        ("service_user", "send_service_user_token"): "true",
        **service_auth(ctx, "service_user", "nova", "nova_password"),
        ("vnc", "enabled"): "true",
        ("vnc", "server_listen"): m,
        ("vnc", "server_proxyclient_address"): m,
        ("vnc", "novncproxy_base_url"): f"http://{url_host(ep(ctx))}:{VNC_PORT}/vnc_auto.html",
        # Debian's nova.conf turns SPICE on; Debian 13's QEMU has it only in a recommended
        # module (qemu-system-modules-spice), so every boot failed: "spice graphics are not
        # supported with this QEMU".  The console is VNC.
        ("spice", "enabled"): "false",
        ("glance", "api_servers"): f"http://{url_host(api_host(ctx))}:9292",
        ("oslo_concurrency", "lock_path"): "/var/lib/nova/tmp",
        **service_auth(ctx, "placement", "placement", "placement_password"),
    })
    if controller:
        v.update({
            ("scheduler", "discover_hosts_in_cells_interval"): "300",
            # one host: a few workers, not one per CPU (each is a ~150 MB Python process)
            ("scheduler", "workers"): "1",
            ("conductor", "workers"): "2",
        })
    if "neutron" in ctx.profile.openstack.services:
        v.update(service_auth(ctx, "neutron", "neutron", "neutron_password"))
        if controller:   # the metadata API runs on the controller only
            v[("neutron", "service_metadata_proxy")] = "true"
            v[("neutron", "metadata_proxy_shared_secret")] = inifile.oslo_value(
                ctx.secrets["metadata_secret"])
    return one_line_settings(NOVA_CONF, v)


# Debian's nova-consoleproxy runs one proxy, chosen here (spicehtml5 by default: the
# nova-novncproxy unit then exits at once, "Deactivated successfully").
CONSOLE_DEFAULTS = "/etc/default/nova-consoleproxy"


def _console_target(ctx) -> tuple[str | None, str | None]:
    old = ctx.transport.read_file(CONSOLE_DEFAULTS)
    if old is None:
        return None, None
    lines = [ln for ln in old.splitlines() if not ln.startswith("NOVA_CONSOLE_PROXY_TYPE=")]
    return old, "\n".join(lines + ["NOVA_CONSOLE_PROXY_TYPE=novnc"]) + "\n"


# Debian's uWSGI units: nova-api ships with 16 processes, the metadata API with 4 and 8
# (the key twice); on one host 2 and 1 serve (each process holds ~170-220 MB).  Neither ini
# has Debian's `Connection: close` of the other APIs (catalog.CONNECTION_CLOSE): CI met
# `openstack server delete --wait` reset by nova-api.
UWSGI_INIS = {"/etc/nova/nova-api-uwsgi.ini": {"processes": "2", **CONNECTION_CLOSE},
         "/etc/nova/nova-api-metadata-uwsgi.ini": {"processes": "1", **CONNECTION_CLOSE}}


def _conf_check(ctx) -> bool:
    old, new = ini_target(ctx, NOVA_CONF, settings(ctx))
    c_old, c_new = _console_target(ctx)
    return old == new and c_old == c_new and uwsgi_ok(ctx, UWSGI_INIS)


def _conf_run(ctx) -> None:
    old, new = ini_target(ctx, NOVA_CONF, settings(ctx))
    if put_file(ctx, NOVA_CONF, new, mode=0o640, owner="root", group="nova", old=old):
        ctx.cache["nova_conf_changed"] = True
    c_old, c_new = _console_target(ctx)
    if c_new is not None and put_file(ctx, CONSOLE_DEFAULTS, c_new, old=c_old):
        ctx.cache["nova_conf_changed"] = True
    if uwsgi_run(ctx, UWSGI_INIS):
        ctx.cache["nova_conf_changed"] = True


# -- schemas and cells --------------------------------------------------------------------------

def _cells_value(ctx) -> str:
    from .common import pkg_version
    import hashlib

    return f"{pkg_version(ctx, 'nova-common')} {hashlib.sha256(mgmt(ctx).encode()).hexdigest()[:12]}"


def _schema_check(ctx) -> bool:
    return marker_check(ctx, "nova.schema", _cells_value(ctx))


def _schema_run(ctx) -> None:
    manage(ctx, "nova", "nova-manage api_db sync")
    cells = manage(ctx, "nova", "nova-manage cell_v2 list_cells").stdout
    if " cell0 " not in cells:
        manage(ctx, "nova", "nova-manage cell_v2 map_cell0")
    if " cell1 " not in cells:
        manage(ctx, "nova", "nova-manage cell_v2 create_cell --name=cell1 --verbose")
    manage(ctx, "nova", "nova-manage db sync")
    marker_set(ctx, "nova.schema", _cells_value(ctx))


# -- libvirt: QEMU in a container, KVM when usable -------------------------------------------

def virt_type(ctx) -> str:
    """kvm when /dev/kvm is there and opens, else qemu (TCG: slower, works everywhere)."""
    if "virt_type" not in ctx.cache:
        r = ctx.sh("test -c /dev/kvm && test -r /dev/kvm && test -w /dev/kvm && echo kvm",
                   check=False, quiet=True, timeout=LOOK)
        ctx.cache["virt_type"] = "kvm" if r.stdout.strip() == "kvm" else "qemu"
        # for the run's summary; the check decides it too, so a resumed run records it
        ctx.facts["virt_type"] = ctx.cache["virt_type"]
    return ctx.cache["virt_type"]


VIRT_TYPES = {"kvm": "virt_type kvm (hardware virtualisation through /dev/kvm)",
              "qemu": "virt_type qemu — no usable /dev/kvm, guests run under QEMU emulation, "
                      "slower"}


def summary(profile, facts) -> tuple[SummaryLine, ...]:
    """The end of a run: the virt_type the nova.libvirt step chose (its recorded fact)."""
    vt = facts.get("virt_type")
    text = VIRT_TYPES.get(vt, "") if isinstance(vt, str) else ""
    if "nova" not in profile.openstack.services or not text:
        return ()
    return (SummaryLine("Compute", text, cli="Compute: " + text.replace("—", "-")),)


def _in_container(ctx) -> bool:
    r = ctx.sh("systemd-detect-virt --container 2>/dev/null", check=False, quiet=True,
               timeout=LOOK)
    return r.ok and r.stdout.strip() not in ("", "none")


LIBVIRTD_CONF = "/etc/libvirt/libvirtd.conf"


def _libvirt_lines(ctx) -> list[tuple[str, dict[str, str], str]]:
    """(file, key -> value lines, why) for libvirt's own files (not ini: `key = value`)."""
    out = [(LIBVIRTD_CONF, {"unix_sock_group": '"libvirt"', "unix_sock_rw_perms": '"0770"',
                            "auth_unix_rw": '"none"'},
            "nova (group libvirt) talks to libvirtd through the socket's group, without polkit "
            "(not installed: libvirt's polkit check times out)")]
    if _in_container(ctx):
        out.append((QEMU_CONF, {"cgroup_controllers": "[ ]"},
                    "in a container the cgroup hierarchies are read-only: libvirt must not "
                    "create its own"))
    return out


def _compute_conf(ctx) -> dict:
    return {("libvirt", "virt_type"): virt_type(ctx)}


def libvirt_check(ctx) -> bool:
    for path, values, _why in _libvirt_lines(ctx):
        if not lines_ok(ctx.transport.read_file(path), values):
            return False
    old, new = ini_target(ctx, NOVA_COMPUTE_CONF, _compute_conf(ctx))
    return old == new and service_ok(ctx, "libvirtd")


def libvirt_run(ctx) -> None:
    changed = False
    for path, values, why in _libvirt_lines(ctx):
        old = ctx.transport.read_file(path)
        if not lines_ok(old, values):
            changed |= put_file(ctx, path, with_lines(old or "", values, why), mode=0o644,
                                old=old)
    old, new = ini_target(ctx, NOVA_COMPUTE_CONF, _compute_conf(ctx))
    if put_file(ctx, NOVA_COMPUTE_CONF, new, mode=0o640, group="nova", old=old):
        ctx.cache["nova_conf_changed"] = True
    ctx.output(f"virt_type = {virt_type(ctx)}"
               + ("" if virt_type(ctx) == "kvm" else " (no usable /dev/kvm: QEMU emulation, slow)"))
    ensure_service(ctx, "libvirtd", restart=changed)
    if changed:
        ctx.cache["nova_compute_restart"] = True


# -- services and discovery ----------------------------------------------------------------------

UNITS = ("nova-api", "nova-api-metadata", "nova-scheduler", "nova-conductor", "nova-novncproxy",
         "nova-compute")


def computes_here(profile) -> bool:
    """Whether the controller is also a compute host (always on one host)."""
    return "compute" in (profile.controller or profile.host).roles


def packages(profile, plat: Platform) -> tuple[str, ...]:
    """The controller's Nova packages: without the compute role, no nova-compute (and so no
    libvirt or QEMU) on it."""
    pkgs = PACKAGES(plat)
    return pkgs if computes_here(profile) else tuple(
        p for p in pkgs if not p.startswith(("nova-compute", "openstack-nova-compute")))


def _units(ctx) -> tuple[str, ...]:
    return UNITS if computes_here(ctx.profile) else UNITS[:-1]


def _services_check(ctx) -> bool:
    if ctx.cache.get("nova_conf_changed") or ctx.cache.get("nova_compute_restart"):
        return False
    return all(service_ok(ctx, u) for u in _units(ctx))


def _services_run(ctx) -> None:
    every = bool(ctx.cache.get("nova_conf_changed"))
    for unit in _units(ctx):
        restart = every or (unit == "nova-compute" and ctx.cache.get("nova_compute_restart"))
        active = ctx.sh(f"systemctl is-active -q {q(unit)}",
                        check=False, quiet=True, timeout=LOOK).ok
        ensure_service(ctx, unit, restart=bool(restart and active))
    wait_http(ctx, f"http://127.0.0.1:{PORT}/", "Nova API", "nova-api",
              "/var/log/nova/nova-api.log")


def _discover_check(ctx) -> bool:
    """The host is mapped into a cell: one row in nova_api.host_mappings (what
    `nova-manage cell_v2 list_hosts` prints, without its seconds of Python start-up)."""
    name = ctx.facts.get("hostname") or ""
    if not name:
        return False
    sql = f"SELECT COUNT(*) FROM nova_api.host_mappings WHERE host = {sql_literal(name)}"
    r = ctx.sh(f"mysql --batch --skip-column-names -e {q(sql)} 2>/dev/null", check=False,
               quiet=True, timeout=SQL)
    return r.ok and r.stdout.strip() not in ("", "0")


def _discover_run(ctx) -> None:
    # nova-compute registers itself a moment after it starts; then the cell maps it.
    r = ctx.sh("for i in $(seq 60); do "
               "runuser -u nova -- nova-manage cell_v2 discover_hosts --verbose 2>&1 | tail -n 3; "
               "runuser -u nova -- nova-manage cell_v2 list_hosts 2>/dev/null | "
               "grep -q \" $(hostname) \" && exit 0; sleep 2; done; exit 1",
               check=False, quiet=True, timeout=240)
    if not r.ok:
        tail = ctx.sh("journalctl -u nova-compute -n 15 --no-pager -o cat; "
                      "grep -E 'ERROR|CRITICAL' /var/log/nova/nova-compute.log | tail -n 8",
                      check=False, quiet=True, timeout=LOOK).lines
        raise StepError("nova-compute did not register this host in cell1 within 2 minutes.",
                        "the compute service is not up or cannot reach the conductor",
                        "read the nova-compute journal below (libvirt, RabbitMQ, placement)",
                        tail=tail[-20:])
    ctx.output(f"host {ctx.facts.get('hostname', '')} mapped to cell1")


def phases(profile, plat: Platform) -> list[Phase]:
    from . import cloudobjects

    # The demo project owns the network, router and test server (admin owns the flavor).
    extra = (cloudobjects.phases(profile, plat)
             if "neutron" in profile.openstack.services and profile.openstack.demo else [])
    here = computes_here(profile)
    steps = [
        Step("nova.user", "User nova with roles admin and service on project service",
             run=_user_run, check=_user_check,
             detail="keystoneauth1: user nova, password ********, admin+service on service"),
        Step("nova.endpoints", f"Service compute and its three endpoints on {PORT}",
             run=_endpoints_run, check=_endpoints_check,
             detail=f"service nova (type compute); http://<endpoint host>:{PORT}/v2.1"),
        Step("nova.databases", "Databases nova_api and nova_cell0 for user nova",
             run=_extra_dbs_run, check=_extra_dbs_check,
             detail="CREATE DATABASE IF NOT EXISTS; GRANT to nova@localhost and nova@%"),
        Step("nova.config", "nova.conf: messaging, databases, keystone, placement, vnc",
             run=_conf_run, check=_conf_check, files=[NOVA_CONF, CONSOLE_DEFAULTS, *UWSGI_INIS],
             detail="transport_url (quorum queues on RabbitMQ 4), [api_database], [database], "
                    "[keystone_authtoken], [service_user], [vnc], [glance], [placement]"
                    + (", [neutron] with the metadata secret"
                       if "neutron" in profile.openstack.services else "")),
        Step("nova.schema", "Nova schemas and cells (cell0, cell1)", run=_schema_run,
             check=_schema_check,
             detail="nova-manage api_db sync; cell_v2 map_cell0; cell_v2 create_cell "
                    "--name=cell1 (when missing); db sync"),
    ]
    if here:
        steps.append(Step(
            "nova.libvirt", "libvirt for nova-compute (KVM when usable, else QEMU)",
            run=libvirt_run, check=libvirt_check,
            files=[NOVA_COMPUTE_CONF, LIBVIRTD_CONF, QEMU_CONF],
            detail="[libvirt] virt_type = kvm if /dev/kvm is usable, else qemu; libvirtd.conf: "
                   "socket group libvirt, no polkit; in a container qemu.conf "
                   "cgroup_controllers = [ ]"))
    steps.append(Step("nova.services", "Start nova-api, scheduler, conductor, novncproxy"
                      + (", compute" if here else " (no nova-compute: not a compute host)"),
                      run=_services_run, check=_services_check,
                      detail="systemctl enable --now each; wait until :8774 answers"))
    if here:
        steps.append(Step("nova.discover", "Map this compute host into cell1",
                          run=_discover_run, check=_discover_check,
                          detail="nova-manage cell_v2 discover_hosts until the host is listed"))
    return [Phase("nova", "Nova (compute)", steps)] + extra




RULES = (
    Rule("libvirt-polkit",
         re.compile(r"PolicyKit1.*timed out|HypervisorUnavailable|Connection to the hypervisor "
                    r"is broken", re.I),
         "error",
         "nova-compute cannot talk to libvirtd: its socket is authorised by polkit, which is "
         "not installed, or libvirtd is down",
         "check /etc/libvirt/libvirtd.conf (unix_sock_group = \"libvirt\", auth_unix_rw = "
         "\"none\"; Retry the nova.libvirt step writes it) and `systemctl status libvirtd`"),
    Rule("kvm-emulation",
         re.compile(r"KVM internal error|emulation failure", re.I),
         "error",
         "the machine's KVM cannot run this guest (a nested or paravirtual KVM that fails "
         "to emulate an instruction)",
         "use virt_type = qemu: remove /dev/kvm from the host (or do not pass it into a "
         "container), Retry nova.libvirt, then boot again"),
)


SERVICE = Service(
    "nova", "Nova", "compute", phases,
    requires=("keystone", "mariadb", "memcached", "rabbitmq", "glance", "placement", "neutron"),
    secrets=(Secret("nova_db_password", "MariaDB user 'nova'", "database"),
             Secret("nova_password", "Keystone 'nova' service user", "keystone")),
    ports=(Port(PORT, UWSGI | {"nova-api"}, "Nova API"),
           Port(8775, UWSGI | {"nova-api-metadata"}, "Nova metadata API"),
           Port(VNC_PORT, frozenset({"nova-novncproxy"}), "Nova noVNC proxy")),
    database="nova",
    default=False,
    rules=RULES,
    configs=lambda plat: (NOVA_CONF, NOVA_COMPUTE_CONF),
    units=lambda plat: UNITS + ("libvirtd",),
    logs=lambda plat: tuple(f"/var/log/nova/{u}.log" for u in UNITS),
    packages=PACKAGES,
    summary=summary,
)
