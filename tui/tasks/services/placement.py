"""Placement (resource inventory for Nova): service user, endpoints, placement.conf, schema,
Apache mod_wsgi on 8778, and a check that the API lists resource providers."""

from __future__ import annotations

from ..engine import Phase, Step, StepError
from ..platforms import Platform
from .base import PerPlatform, Port, Secret, Service
from .catalog import (WsgiLayout, authtoken, endpoints_ok, ensure_endpoints, service_url,
                      wsgi_script, wsgi_vhost)
from .common import LOOK, SERVICE as SERVICE_LIMIT
from .common import one_line_settings
from .common import (SERVICE_ROLES, admin_session, db_sync_step, db_url, ensure_service,
                     ensure_user, ep, forward, ini_target, platform_of, put_file, q, read_remote,
                     service_ok, wait_http)
from .keystone import host_size, wsgi_processes

PLACEMENT_CONF = "/etc/placement/placement.conf"
PORT = 8778
WSGI = "/usr/share/stack-tui/placement-api.wsgi"


Layout = WsgiLayout  # Placement under the same Apache as Keystone


LAYOUT: PerPlatform[Layout] = PerPlatform(
    deb=Layout("/etc/apache2/sites-available/placement.conf", "a2ensite -q placement",
               "placement-api", "placement.wsgi:init_application"),
    # replaces the package's own vhost
    rpm=Layout("/etc/httpd/conf.d/00-placement-api.conf", "true", None,
               "placement.wsgi:init_application"),
    overrides={
        "ubuntu": {"vhost": "/etc/apache2/sites-available/placement-api.conf",  # its own
                   "vhost_enable": "a2ensite -q placement-api", "distro_service": None},
        "debian-13": {"wsgi_module": "placement.wsgi.api:application"},
    })
PACKAGES = PerPlatform(deb=("placement-api",), rpm=("openstack-placement-api",))


def layout(plat: Platform) -> Layout:
    return LAYOUT(plat)


def placement_url(ctx) -> str:
    return service_url(ctx, PORT)


def _user_check(ctx) -> bool:
    return ensure_user(ctx, "placement", ctx.secrets["placement_password"], "service",
                       SERVICE_ROLES, check_only=True)


def _user_run(ctx) -> None:
    ensure_user(ctx, "placement", ctx.secrets["placement_password"], "service", SERVICE_ROLES)


def _endpoints_check(ctx) -> bool:
    return endpoints_ok(ctx, "placement", placement_url(ctx))


def _endpoints_run(ctx) -> None:
    ensure_endpoints(ctx, "placement", "placement", "Placement API", placement_url(ctx))


def _settings(ctx) -> dict:
    values = {
        ("placement_database", "connection"): db_url(ctx, "placement", "placement_db_password"),
        ("api", "auth_strategy"): "keystone",
        **authtoken(ctx, "placement", "placement_password"),
    }
    return one_line_settings(PLACEMENT_CONF, values)


def _conf_check(ctx) -> bool:
    old, new = ini_target(ctx, PLACEMENT_CONF, _settings(ctx))
    return old == new


def _conf_run(ctx) -> None:
    old, new = ini_target(ctx, PLACEMENT_CONF, _settings(ctx))
    if put_file(ctx, PLACEMENT_CONF, new, mode=0o640, owner="root", group="placement", old=old):
        ctx.cache["placement_conf_changed"] = True


def wsgi_body(plat: Platform) -> str:
    """Placement's WSGI script: the module's application, or the older factory (Zed)."""
    return wsgi_script("Placement's WSGI application", layout(plat).wsgi_module)


def _files(ctx) -> list[tuple[str, str]]:
    plat = platform_of(ctx)
    vhost = wsgi_vhost(title="Placement", port=PORT, group="placement-api", script=WSGI,
                       user="placement", processes=min(4, wsgi_processes(*host_size(ctx))),
                       server_name=ep(ctx), log_dir=plat.apache_log_dir, log="placement")
    return [(WSGI, wsgi_body(plat)), (layout(plat).vhost, vhost)]


def _apache_check(ctx) -> bool:
    plat = platform_of(ctx)
    if any(read_remote(ctx, path) != body for path, body in _files(ctx)):
        return False
    lay = layout(plat)
    if not ctx.sh(plat.web.enabled_test(lay.vhost), check=False, quiet=True, timeout=LOOK).ok:
        return False
    if lay.distro_service and not _distro_masked(ctx, lay.distro_service):
        return False
    return service_ok(ctx, plat.web_service) and _http_ok(ctx)


def _distro_masked(ctx, unit: str) -> bool:
    r = ctx.sh(f"systemctl is-enabled {q(unit)} 2>/dev/null", check=False, quiet=True, timeout=LOOK)
    return r.stdout.strip() == "masked"


def _http_ok(ctx) -> bool:
    r = ctx.sh(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 http://127.0.0.1:{PORT}/",
               check=False, quiet=True, timeout=LOOK)
    return r.stdout.strip() == "200"


def _apache_run(ctx) -> None:
    plat = platform_of(ctx)
    unit = layout(plat).distro_service
    if unit:
        # Apache serves Placement: the packaged uWSGI service (8 x 32 threads) stays off.
        ctx.sh(f"systemctl disable -q {q(unit)} 2>/dev/null; "
               f"systemctl is-active -q {q(unit)} && systemctl kill -s KILL {q(unit)}; "
               f"systemctl mask -q {q(unit)}", check=False, quiet=True, timeout=SERVICE_LIMIT)
    ctx.sh("install -d -m 755 /usr/share/stack-tui", quiet=True, timeout=LOOK)
    changed = False
    for path, body in _files(ctx):
        changed |= put_file(ctx, path, body)
    changed |= bool(ctx.cache.get("placement_conf_changed"))
    if plat.web.a2en:
        ctx.sh(plat.web.enable_module("wsgi") + "; " + layout(plat).vhost_enable,
               quiet=True, timeout=SERVICE_LIMIT)
    r = ctx.sh(plat.web.configtest + " 2>&1", check=False, quiet=True, timeout=SERVICE_LIMIT)
    if not r.ok:
        raise StepError("Apache rejects its configuration.", f"{plat.web.configtest} failed",
                        f"fix {layout(plat).vhost}", tail=r.lines[-15:])
    active = ctx.sh(f"systemctl is-active -q {plat.web_service}",
                    check=False, quiet=True, timeout=LOOK).ok
    ensure_service(ctx, plat.web_service, restart=active and changed)
    wait_http(ctx, f"http://127.0.0.1:{PORT}/", "Placement", plat.web_service,
              f"{plat.apache_log_dir}/placement.log")


def _providers(ctx):
    sess = admin_session(ctx)
    return sess.get(f"http://127.0.0.1:{forward(ctx, PORT)}/resource_providers",
                    headers={"OpenStack-API-Version": "placement 1.0"}, raise_exc=False)


def _verify(ctx) -> None:
    resp = _providers(ctx)
    if resp.status_code != 200:
        raise StepError(f"Placement does not list resource providers (HTTP {resp.status_code}).",
                        ctx.redact(resp.text[:300]),
                        "check [keystone_authtoken] in placement.conf and "
                        f"{platform_of(ctx).apache_log_dir}/placement.log")
    ctx.output(f"Placement lists {len(resp.json().get('resource_providers', []))} "
               "resource provider(s)")


def _verify_check(ctx) -> bool:
    return _providers(ctx).status_code == 200  # one authenticated GET: a read


def phases(profile, plat: Platform) -> list[Phase]:
    sync_check, sync_run = db_sync_step("placement", "placement-manage db sync",
                                        PACKAGES(plat)[0])
    lay = layout(plat)
    return [Phase("placement", "Placement (resource inventory)", [
        Step("placement.user", "User placement with roles admin and service on project service",
             run=_user_run, check=_user_check,
             detail="keystoneauth1: user placement, password ********, admin+service on service"),
        Step("placement.endpoints", f"Service placement and its three endpoints on {PORT}",
             run=_endpoints_run, check=_endpoints_check,
             detail=f"service placement (type placement); public/internal/admin "
                    f"http://<endpoint host>:{PORT}"),
        Step("placement.config", "placement.conf: database, keystone_authtoken",
             run=_conf_run, check=_conf_check, files=[PLACEMENT_CONF],
             detail="[placement_database] connection; [api] auth_strategy = keystone; "
                    "[keystone_authtoken] (memcached, service token roles)"),
        Step("placement.db_sync", "Create the Placement database schema", run=sync_run,
             check=sync_check, detail="runuser -u placement -- placement-manage db sync"),
        Step("placement.apache", f"Serve Placement from {plat.web_service} on port {PORT}",
             run=_apache_run, check=_apache_check, files=[WSGI, lay.vhost],
             detail=f"mod_wsgi vhost on :{PORT} (one thread per process)"
                    + (f"; systemctl mask {lay.distro_service} (its uWSGI)"
                       if lay.distro_service else "")
                    + "; wait until / answers"),
        Step("placement.verify", "Placement lists resource providers", run=_verify,
             check=_verify_check,
             detail="GET /resource_providers as admin over the port forward"),
    ])]


SERVICE = Service(
    "placement", "Placement", "resource inventory", phases,
    requires=("keystone", "mariadb", "memcached"),
    secrets=(Secret("placement_db_password", "MariaDB user 'placement'", "database"),
             Secret("placement_password", "Keystone 'placement' service user", "keystone")),
    ports=(Port(PORT, frozenset({"apache2", "httpd"}), "Placement API (Apache)"),),
    database="placement",
    default=False,
    configs=lambda plat: (PLACEMENT_CONF, layout(plat).vhost),
    units=lambda plat: (plat.web_service,),
    logs=lambda plat: (f"{plat.apache_log_dir}/placement.log",
                       "/var/log/placement/placement-manage.log"),
    packages=PACKAGES,
)
