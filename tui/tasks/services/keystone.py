"""Keystone (identity): config, schema, keys, Apache mod_wsgi, bootstrap, projects."""

from __future__ import annotations

import re
import time

from .. import inifile
from ..engine import Phase, Step, StepError
from ..platforms import Platform
from .base import PerPlatform, Service, Port, Secret, Rule
from .catalog import WsgiLayout, drop_unloadable_ssl_site, wsgi_script, wsgi_vhost
from .common import (
    KeystoneAnswered, db_sync_step, manage, wait_http, api, can_auth, db_url, DEMO_ROLES, ensure_entity,
    ensure_service, ensure_user, ep, find_one, forget_session, identity_url, ini_target, mgmt,
    one_line_settings, platform_of, put_file, q, read_remote, service_ok, LOOK, SQL, SERVICE as SERVICE_LIMIT,
)


KEYSTONE_CONF = "/etc/keystone/keystone.conf"


Layout = WsgiLayout  # where the platform's packages put Keystone under Apache

# Keystone's WSGI application: the module entry (keystone.wsgi.api, Keystone >= 26)
# or the older factory; the keystone-wsgi-public script goes away upstream in 2025.2.
_FACTORY = "keystone.server.wsgi:initialize_public_application"
LAYOUT: PerPlatform[Layout] = PerPlatform(
    deb=Layout("/etc/apache2/sites-available/keystone.conf", "a2ensite -q keystone", "keystone",
               _FACTORY),
    rpm=Layout("/etc/httpd/conf.d/wsgi-keystone.conf", "true", None, _FACTORY),
    overrides={
        "ubuntu": {"distro_service": None},  # Ubuntu's keystone runs under apache2 already
        "debian-13": {"wsgi_module": "keystone.wsgi.api:application"},
    })
PACKAGES = PerPlatform(deb=("keystone", "apache2", "libapache2-mod-wsgi-py3"),
                       rpm=("openstack-keystone", "httpd", "python3-mod_wsgi"))


def layout(plat: Platform) -> Layout:
    return LAYOUT(plat)


def distro_unit(plat: Platform) -> str | None:
    """The packaged keystone unit the package step masks (Apache serves Keystone)."""
    return LAYOUT(plat).distro_service


def _keystone_settings(ctx) -> dict:
    return one_line_settings(KEYSTONE_CONF, _keystone_values(ctx))


def _keystone_values(ctx) -> dict:
    return {
        ("database", "connection"): db_url(ctx, "keystone", "keystone_db_password"),
        ("token", "provider"): "fernet",
        ("cache", "enabled"): "true",
        ("cache", "backend"): "oslo_cache.memcache_pool",
        ("cache", "memcache_servers"): f"{mgmt(ctx)}:11211",
        # bcrypt reads 72 bytes; Keystone (Zed and Epoxy alike) warns "Truncating password"
        # on every password check unless the limit says so (stack-tui refuses longer
        # Keystone passwords up front).
        ("identity", "max_password_length"): "72",
    }


def _keystone_conf_check(ctx):
    old, new = ini_target(ctx, KEYSTONE_CONF, _keystone_settings(ctx))
    return old == new


def _keystone_conf_run(ctx):
    old, new = ini_target(ctx, KEYSTONE_CONF, _keystone_settings(ctx))
    if put_file(ctx, KEYSTONE_CONF, new, mode=0o640, owner="root", group="keystone", old=old):
        web = platform_of(ctx).web_service
        if ctx.sh(f"systemctl is-active -q {web}", check=False, quiet=True, timeout=LOOK).ok:
            ctx.output(f"reloading {web} so Keystone reads the new configuration")
            ensure_service(ctx, web, restart=True)


def _keys_check(kind):
    def check(ctx):
        return ctx.sh(f"test -s /etc/keystone/{kind}-keys/0", check=False, quiet=True,
                      timeout=LOOK).ok
    return check


def _keys_run(kind):
    def run(ctx):
        manage(ctx, "root", f"keystone-manage {kind}_setup --keystone-user keystone "
                             "--keystone-group keystone")
    return run


WSGI_KEYSTONE = "/usr/share/stack-tui/keystone-public.wsgi"


def wsgi_processes(cpus: int, mem_kib: int) -> int:
    """mod_wsgi daemon processes for one service: two per CPU, 2..8, and at
    most one per 512 MiB of memory (a Keystone process holds about 100 MiB;
    the rest is left to the other services on the host)."""
    by_cpu = 2 * max(cpus, 1)
    by_mem = max(mem_kib // (512 * 1024), 2)
    return max(2, min(8, by_cpu, by_mem))


def host_size(ctx) -> tuple[int, int]:
    """(CPUs, memory in KiB) of the host, read once per run.

    keystone.apache's check reaches this (it renders the vhost to compare it): the
    ``ctx.cache`` entry is a per-run memo of a read, not state, so the check stays pure."""
    if "host_size" not in ctx.cache:
        r = ctx.sh("nproc; awk '/^MemTotal:/ {print $2}' /proc/meminfo", check=False,
                   quiet=True, timeout=LOOK)
        nums = [int(x) for x in r.stdout.split() if x.isdigit()]
        ctx.cache["host_size"] = (nums[0], nums[1]) if len(nums) == 2 else (1, 2 * 1024 * 1024)
    return ctx.cache["host_size"]


def _vhost(ctx) -> str:
    plat = platform_of(ctx)
    procs = wsgi_processes(*host_size(ctx))
    # One thread per process: Keystone keeps the validated token's context on
    # objects its threads share, so with threads > 1 one user's request can be
    # judged with another user's roles.  Upstream's Apache config uses threads=1.
    return wsgi_vhost(title="Keystone (identity)", port=5000, group="keystone-public",
                      script=WSGI_KEYSTONE, user="keystone", processes=procs,
                      server_name=ep(ctx), log_dir=plat.apache_log_dir, log="keystone")


def wsgi_body(plat: Platform) -> str:
    """Keystone's WSGI script: the module entry where the package has it."""
    return wsgi_script("Keystone's public WSGI application", layout(plat).wsgi_module)


def _apache_files(ctx) -> list[tuple[str, str]]:
    plat = platform_of(ctx)
    try:  # the last line of defence: ServerName must stay one line of each file
        inifile.check_line("ServerName in the Apache config", ep(ctx))
    except inifile.UnsafeValue as exc:
        raise StepError("The endpoint host cannot go into Apache's configuration.", str(exc),
                        "fix openstack.endpoint_host (or host.address) in the profile") from None
    return [
        (WSGI_KEYSTONE, wsgi_body(plat)),
        (layout(plat).vhost, _vhost(ctx)),
        (plat.servername_conf, f"# Written by stack-tui\nServerName {ep(ctx)}\n"),
    ]


def _apache_check(ctx) -> bool:
    plat = platform_of(ctx)
    for path, body in _apache_files(ctx):
        if read_remote(ctx, path) != body:
            return False
    if plat.web.a2en:
        web = plat.web
        r = ctx.sh(f"{web.enabled_test(layout(plat).vhost)} && "
                   f"{web.enabled_test(plat.servername_conf)} && "
                   f"{web.module_enabled_test('wsgi')}", check=False, quiet=True, timeout=LOOK)
        if not r.ok:
            return False
    return service_ok(ctx, plat.web_service) and _keystone_http_ok(ctx)


def _keystone_http_ok(ctx) -> bool:
    r = ctx.sh("curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://127.0.0.1:5000/v3/",
               check=False, quiet=True, timeout=LOOK)
    return r.stdout.strip() == "200"


def _apache_run(ctx) -> None:
    plat = platform_of(ctx)
    changed = False
    ctx.sh("install -d -m 755 /usr/share/stack-tui", quiet=True, timeout=LOOK)
    for path, body in _apache_files(ctx):
        changed |= put_file(ctx, path, body)
    if plat.web.a2en:
        ctx.sh(plat.web.enable_module("wsgi") + "; " + layout(plat).vhost_enable + "; "
               + plat.servername_enable, quiet=True, timeout=SERVICE_LIMIT)
    changed |= drop_unloadable_ssl_site(ctx)  # Horizon's package may have enabled one
    r = ctx.sh(plat.web.configtest + " 2>&1", check=False, quiet=True, timeout=SERVICE_LIMIT)
    if not r.ok:
        raise StepError("Apache rejects its configuration.", "apachectl configtest failed",
                        f"fix {layout(plat).vhost}", tail=r.lines[-15:])
    active = ctx.sh(f"systemctl is-active -q {plat.web_service}", check=False, quiet=True,
                    timeout=LOOK).ok
    if active and changed:
        ensure_service(ctx, plat.web_service, restart=True)
    else:
        ensure_service(ctx, plat.web_service)
    wait_http(ctx, "http://127.0.0.1:5000/v3/", "Keystone", plat.web_service,
               f"{plat.apache_log_dir}/keystone.log")


def _bootstrap_check(ctx) -> bool:
    # Before bootstrap there is no Default domain: asking Keystone would log a warning
    # ("Could not find domain: Default") into a fresh install's log.  The database says.
    r = ctx.sh("mysql --batch --skip-column-names -e \"SELECT COUNT(*) FROM keystone.user u "
               "JOIN keystone.local_user l ON l.user_id = u.id WHERE l.name = 'admin' "
               "AND u.domain_id = 'default'\" 2>/dev/null", check=False, quiet=True, timeout=SQL)
    if r.stdout.strip() in ("", "0"):
        return False
    if not can_auth(ctx, "admin", ctx.secrets["admin_password"], "admin"):
        return False
    try:
        return _identity_endpoints_ok(ctx)
    except KeystoneAnswered as exc:
        if exc.status == 403:  # admin lost its role on the project: bootstrap grants it again
            return False
        raise


def _identity_endpoints_ok(ctx) -> bool:
    svc = find_one(ctx, "services", type="identity")
    if not svc:
        return False
    eps = api(ctx, "GET", f"/endpoints?service_id={svc['id']}")["endpoints"]
    region = ctx.profile.openstack.region
    want = {(i, identity_url(ctx).rstrip("/")) for i in ("public", "internal", "admin")}
    have = {(e["interface"], e["url"].rstrip("/")) for e in eps if e.get("region_id") == region}
    return want <= have


def _bootstrap_run(ctx) -> None:
    url = identity_url(ctx)
    region = ctx.profile.openstack.region
    manage(ctx, "keystone",
            "keystone-manage bootstrap --bootstrap-username admin "
            "--bootstrap-project-name admin --bootstrap-role-name admin "
            f"--bootstrap-admin-url {q(url)} --bootstrap-internal-url {q(url)} "
            f"--bootstrap-public-url {q(url)} --bootstrap-region-id {q(region)}",
            secrets={"OS_BOOTSTRAP_PASSWORD": ctx.secrets["admin_password"]})
    forget_session(ctx, "admin", ctx.secrets["admin_password"], "admin")
    if not can_auth(ctx, "admin", ctx.secrets["admin_password"], "admin"):
        raise StepError("After bootstrap, Keystone still refuses the admin password.",
                        "bootstrap did not reset it", "check /var/log/keystone/ on the host")
    _wait_admin_role(ctx)


def _wait_admin_role(ctx, within: float = 60.0) -> None:
    """Poll, a new token each time, until admin's token works for admin actions.  A grant
    bootstrap gave back (admin had lost its role) reaches new tokens only when Keystone's
    cached assignments expire (403 until then); a password bootstrap just reset revokes the
    user's tokens issued before it, and a token issued within that same second is taken for
    one of them (401: seen on Debian 12 when the password went back and forth)."""
    end = time.monotonic() + within
    while True:
        try:
            _identity_endpoints_ok(ctx)
            return
        except KeystoneAnswered as exc:
            if exc.status not in (401, 403) or time.monotonic() >= end:
                raise
        forget_session(ctx, "admin", ctx.secrets["admin_password"], "admin")
        ctx.cancel.wait(1.0)




def _projects_wanted(ctx) -> list[tuple[str, str]]:
    out = [("service", "Service Project")]
    if ctx.profile.openstack.demo:
        out.append(("demo", "Demo Project"))
    return out


def _projects_check(ctx) -> bool:
    for name, _ in _projects_wanted(ctx):
        if not find_one(ctx, "projects", name=name, domain_id="default"):
            return False
    if ctx.profile.openstack.demo:
        return ensure_user(ctx, "demo", ctx.secrets["demo_password"], "demo", DEMO_ROLES,
                           check_only=True)
    return True


def _projects_run(ctx) -> None:
    for name, desc in _projects_wanted(ctx):
        ensure_entity(ctx, "projects", "project",
                      {"name": name, "domain_id": "default", "description": desc},
                      {"name": name, "domain_id": "default"})
    if ctx.profile.openstack.demo:
        ensure_user(ctx, "demo", ctx.secrets["demo_password"], "demo", DEMO_ROLES)


def phases(profile, plat: Platform) -> list[Phase]:
    """The keystone phase as the plan shows and runs it."""
    ks_sync_check, ks_sync_run = db_sync_step("keystone", "keystone-manage db_sync",
                                               PACKAGES(plat)[0])
    return [Phase("keystone", "Keystone (identity)", [
        Step("keystone.config", "keystone.conf: database, fernet tokens, memcache",
             run=_keystone_conf_run, check=_keystone_conf_check, files=[KEYSTONE_CONF],
             detail="[database] connection = mysql+pymysql://keystone:********@…/keystone; "
                    "[token] provider = fernet; [cache] memcache"),
        Step("keystone.db_sync", "Create the Keystone database schema", run=ks_sync_run,
             check=ks_sync_check,
             detail="runuser -u keystone -- keystone-manage db_sync"),
        Step("keystone.fernet_setup", "Fernet token keys", run=_keys_run("fernet"),
             check=_keys_check("fernet"),
             detail="keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone",
             files=["/etc/keystone/fernet-keys/"]),
        Step("keystone.credential_setup", "Credential encryption keys",
             run=_keys_run("credential"), check=_keys_check("credential"),
             detail="keystone-manage credential_setup --keystone-user keystone --keystone-group keystone",
             files=["/etc/keystone/credential-keys/"]),
        Step("keystone.apache", f"Serve Keystone from {plat.web_service} on port 5000",
             run=_apache_run, check=_apache_check,
             files=[WSGI_KEYSTONE, layout(plat).vhost, plat.servername_conf],
             detail=f"mod_wsgi vhost on :5000 (ServerName set); systemctl enable --now "
                    f"{plat.web_service}; wait until /v3 answers"),
        Step("keystone.bootstrap", "Bootstrap admin user, role and identity endpoints",
             run=_bootstrap_run, check=_bootstrap_check,
             detail="keystone-manage bootstrap (password in OS_BOOTSTRAP_PASSWORD via stdin); "
                    "public/internal/admin endpoints http://<endpoint host>:5000/v3/"),
        Step("keystone.projects", "Projects service and demo, role user, demo user",
             run=_projects_run, check=_projects_check,
             detail="keystoneauth1 over the port forward: look up, then create what is missing"),
    ])]


# Its known failures, in plain words (tui/tasks/explain.py aggregates every service's).
RULES = (
    Rule("keystone-401",
         re.compile(r"\b401\b|Unauthorized|requires authentication", re.I),
         "error",
         "Keystone refused the credentials (401)",
         "check the admin password secret; Retry (keystone.bootstrap resets the admin "
         "password); the Keystone log tail is below",
         logs=("keystone",)),
    Rule("keystone-403",
         re.compile(r"\b403\b|Forbidden|not authorized to perform", re.I),
         "error",
         "Keystone refused the action (403): the user lacks the admin role on the project, or a "
         "policy forbids it",
         "Retry (keystone.bootstrap re-grants admin); the Keystone log tail is below",
         logs=("keystone",)),
)


SERVICE = Service(
    "keystone", "Keystone", "identity", phases,
    requires=("mariadb", "memcached"),
    secrets=(Secret("admin_password", "Keystone 'admin' user", "keystone"),
             Secret("demo_password", "Keystone 'demo' user", "keystone", only_with_demo=True),
             Secret("keystone_db_password", "MariaDB user 'keystone'", "database")),
    ports=(Port(5000, frozenset({"apache2", "httpd"}), "Keystone (Apache)"),),
    database="keystone",
    configs=lambda plat: (KEYSTONE_CONF, layout(plat).vhost),
    units=lambda plat: (plat.web_service,) + ((distro_unit(plat),) if distro_unit(plat) else ()),
    logs=lambda plat: (f"{plat.apache_log_dir}/keystone.log",
                       "/var/log/keystone/keystone-manage.log"),
    rules=RULES,
    packages=PACKAGES,
)
