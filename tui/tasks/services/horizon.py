"""Horizon (the web dashboard): Debian's openstack-dashboard-apache under the Apache that
serves Keystone, at http://<endpoint host>/horizon.

Debian's packages lay it out as: /etc/openstack-dashboard/local_settings.py (imported by
openstack_dashboard.settings), then every local_settings.d/*.py snippet exec'd after it
(Debian ships _0005_debian_webroot.py and a LocMem _0006_debian_cache.py, which would win over
local_settings.py), static files compressed offline into /var/lib/openstack-dashboard/static
by the package's postinst (`manage.py collectstatic` + `compress`), and the Apache site
openstack-dashboard-alias-only.conf (WSGIScriptAlias /horizon, embedded mode) enabled when
the package is not told to take over port 80.  stack-tui writes local_settings.py, one late
snippet pinning the settings Debian's snippets would override, rebuilds the static files
whenever those change (at install, never at a first request), and replaces the alias-only
site with a mod_wsgi daemon of its own, so Keystone's :5000 site stays as it is.
"""

from __future__ import annotations

import hashlib

from ..engine import Phase, Step, StepError
from ..platforms import Platform
from . import neutron
from .base import PerPlatform, Port, Service, SummaryLine
from .catalog import drop_unloadable_ssl_site, unloadable_ssl_site
from .common import (LOOK, ensure_service, ep, identity_url, marker_check,
                     marker_set, mgmt, one_line, platform_of, put_file, q, read_remote,
                     service_ok)

SETTINGS = "/etc/openstack-dashboard/local_settings.py"
SNIPPET = "/etc/openstack-dashboard/local_settings.d/_9990_stack_tui.py"
SITE = "/etc/apache2/sites-available/openstack-dashboard-alias-only.conf"
SITE_ENABLE = "a2ensite -q openstack-dashboard-alias-only"
WSGI = "/usr/share/openstack-dashboard/wsgi.py"
MANAGE = "/usr/share/openstack-dashboard/manage.py"
STATIC = "/var/lib/openstack-dashboard/static"
MANIFEST = f"{STATIC}/dashboard/manifest.json"  # compressor's manifest (COMPRESS_OUTPUT_DIR)
SECRET_KEY_FILE = "/var/lib/openstack-dashboard/secret-key/.secret_key_store"
LOG = "/var/log/apache2/error.log"
WEBROOT = "/horizon/"
LOGIN_PATH = f"{WEBROOT}auth/login/"
STATIC_LIMIT = 900   # collectstatic + compress: a minute or two on a small host


def compress_script(manage: str = MANAGE) -> str:
    """``manage.py compress --force`` with django-compressor's render pool cut to one thread.

    django-compressor 4.x renders the offline blocks in a pool of 4 threads, and pyScss (the
    SCSS compiler Horizon uses) is not thread-safe: about one compress in twelve failed on a
    stylesheet that is fine ("Syntax error: Found 'inline-blo' but expected one of ...", Debian
    12; not tied to the hash seed).  One thread takes the same time (the GIL keeps the work on
    one core anyway) and did not fail in 30 runs."""
    return ("import concurrent.futures as cf, runpy, sys\n"
            "class One(cf.ThreadPoolExecutor):\n"
            "    def __init__(self, *args, **kwargs):\n"
            "        super().__init__(max_workers=1)\n"
            "cf.ThreadPoolExecutor = One\n"
            f"sys.argv = [{manage!r}, 'compress', '--force', '-v0']\n"
            f"runpy.run_path({manage!r}, run_name='__main__')\n")
SUPPORTED = ("debian-13", "debian-12")


def dashboard_url(profile) -> str:
    host = profile.endpoint_host
    return f"http://{f'[{host}]' if ':' in host else host}{WEBROOT}"


def login_hint(profile) -> str:
    """Whom to log in as (a user name, never a password)."""
    who = "demo (project demo)" if profile.openstack.demo else "admin"
    return f"log in as {who}, domain Default"


def dashboard_line(profile) -> str:
    """apply's line about the dashboard: its URL and the login; '' without Horizon."""
    if "horizon" not in profile.openstack.services:
        return ""
    return (f"Dashboard: {dashboard_url(profile)} - {login_hint(profile)}; "
            f"the password is in {profile.secrets_file}")


def summary(profile, facts) -> tuple[SummaryLine, ...]:
    """The end of a run: where the dashboard is and whom to log in as."""
    if "horizon" not in profile.openstack.services:
        return ()
    return (SummaryLine("Dashboard", f"{dashboard_url(profile)}  ({login_hint(profile)})",
                        cli=dashboard_line(profile), endpoint=True),)


def self_service(profile, plat: Platform) -> bool:
    """Neutron is installed with self-service (VXLAN) networks and the L3 agent."""
    return "neutron" in profile.openstack.services and bool(neutron.layout(plat).mechanism)


def _py(where: str, value: str) -> str:
    """A Python string literal of a one-line value (repr quotes and escapes it)."""
    return repr(one_line(where, value, "fix the host address or endpoint host in the profile"))


def _hosts(ctx) -> list[str]:
    names = [ep(ctx), mgmt(ctx), ctx.profile.host.address, "localhost", "127.0.0.1"]
    return [h for i, h in enumerate(names) if h and h not in names[:i]]


def _cache(ctx) -> str:
    return ("CACHES = {\n    'default': {\n"
            "        'BACKEND': 'django.core.cache.backends.memcached.PyMemcacheCache',\n"
            f"        'LOCATION': {_py('the memcached address', _memcached(ctx))},\n"
            "    },\n}\nSESSION_ENGINE = 'django.contrib.sessions.backends.cache'\n")


def _memcached(ctx) -> str:
    addr = mgmt(ctx)
    return f"[{addr}]:11211" if ":" in addr else f"{addr}:11211"


def settings_body(ctx) -> str:
    plat = platform_of(ctx)
    router = self_service(ctx.profile, plat)
    hosts = ", ".join(_py("ALLOWED_HOSTS", h) for h in _hosts(ctx))
    return f"""# Written by stack-tui: Horizon's settings (a re-run rewrites this file)
import os

from horizon.utils import secret_key

DEBUG = False
ALLOWED_HOSTS = [{hosts}]
WEBROOT = {WEBROOT!r}
COMPRESS_OFFLINE = True
STATIC_ROOT = {STATIC + '/'!r}
# generated on the host by Horizon itself, readable by www-data only
SECRET_KEY = secret_key.generate_or_read_from_file({SECRET_KEY_FILE!r})

{_cache(ctx)}
OPENSTACK_HOST = {_py('OPENSTACK_HOST', ep(ctx))}
OPENSTACK_KEYSTONE_URL = {_py('OPENSTACK_KEYSTONE_URL', identity_url(ctx).rstrip('/'))}
OPENSTACK_KEYSTONE_MULTIDOMAIN_SUPPORT = False
OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = 'Default'
OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'
OPENSTACK_API_VERSIONS = {{'identity': 3, 'image': 2, 'volume': 3}}
OPENSTACK_ENDPOINT_TYPE = 'publicURL'
OPENSTACK_REGION_NAME = {_py('the region', ctx.profile.openstack.region)}

# Neutron as installed: routers and floating IPs only with self-service networks
OPENSTACK_NEUTRON_NETWORK = {{
    'enable_router': {router},
    'enable_quotas': {router},
    'enable_ipv6': False,
    'enable_distributed_router': False,
    'enable_ha_router': False,
    'enable_fip_topology_check': {router},
}}

TIME_ZONE = 'UTC'
SESSION_TIMEOUT = 3600
"""


def snippet_body(ctx) -> str:
    """Debian's local_settings.d snippets run after local_settings.py (one sets a LocMem
    cache, one the webroot): this one runs last and pins them."""
    return ("# Written by stack-tui: runs after Debian's snippets (_0005 webroot, _0006 cache)\n"
            f"WEBROOT = {WEBROOT!r}\nCOMPRESS_OFFLINE = True\n{_cache(ctx)}")


def _settings_files(ctx) -> list[tuple[str, str]]:
    return [(SETTINGS, settings_body(ctx)), (SNIPPET, snippet_body(ctx))]


def _settings_check(ctx) -> bool:
    return all(read_remote(ctx, path) == body for path, body in _settings_files(ctx))


def _settings_run(ctx) -> None:
    ctx.sh("install -d -m 755 /etc/openstack-dashboard/local_settings.d", quiet=True,
           timeout=LOOK)
    for path, body in _settings_files(ctx):
        put_file(ctx, path, body, mode=0o640, owner="root", group="www-data")


def _static_key(ctx) -> str:
    """What the compressed static files depend on: our settings (webroot, offline context)."""
    body = "".join(b for _, b in _settings_files(ctx))
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _static_check(ctx) -> bool:
    if not ctx.sh(f"test -s {MANIFEST}", check=False, quiet=True, timeout=LOOK).ok:
        return False
    return marker_check(ctx, "horizon-static", _static_key(ctx))


def _static_run(ctx) -> None:
    # As the package's postinst does, with our settings: done here so no request waits.
    r = ctx.sh(f"cd /usr/share/openstack-dashboard && python3 {MANAGE} collectstatic "
               f"--noinput --clear -v0 && python3 -c {q(compress_script())} && "
               f"chown -R www-data {STATIC} /var/lib/openstack-dashboard/secret-key 2>&1",
               check=False, quiet=True, timeout=STATIC_LIMIT)
    if not r.ok:
        raise StepError("Horizon's static files could not be built.",
                        "manage.py collectstatic/compress failed (often a settings error)",
                        f"read the output below; check {SETTINGS} and {SNIPPET}",
                        tail=r.lines[-15:])
    marker_set(ctx, "horizon-static", _static_key(ctx))


def site_body(processes: int) -> str:
    return f"""# Written by stack-tui: Horizon at {WEBROOT} in its own mod_wsgi daemon
# (Debian's alias-only site runs it inside Apache's own processes)
WSGIDaemonProcess horizon user=www-data group=www-data processes={processes} threads=4 display-name=%{{GROUP}} lang=C.UTF-8 locale=C.UTF-8
WSGIScriptAlias {WEBROOT.rstrip('/')} {WSGI} process-group=horizon application-group=%{{GLOBAL}}
Alias {WEBROOT}static {STATIC}
# the compressed CSS names the icon fonts under /static/ (Debian's own site aliases it too)
Alias /static {STATIC}

<Directory /usr/share/openstack-dashboard>
    Require all granted
</Directory>

<Directory {STATIC}>
    Require all granted
</Directory>
"""


def _site(ctx) -> str:
    from .keystone import host_size

    cpus, _mem = host_size(ctx)
    return site_body(max(1, min(2, cpus)))


def _login_page_ok(ctx) -> bool:
    r = ctx.sh(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 "
               f"http://127.0.0.1{LOGIN_PATH}", check=False, quiet=True, timeout=LOOK)
    return r.stdout.strip() == "200"


def _apache_check(ctx) -> bool:
    plat = platform_of(ctx)
    if read_remote(ctx, SITE) != _site(ctx):
        return False
    if not ctx.sh(plat.web.enabled_test(SITE), check=False, quiet=True, timeout=LOOK).ok:
        return False
    if unloadable_ssl_site(ctx):
        return False
    # the running daemon loaded these settings and static files (set once it was restarted)
    if not marker_check(ctx, "horizon-loaded", _static_key(ctx)):
        return False
    return service_ok(ctx, plat.web_service) and _login_page_ok(ctx)


def _apache_run(ctx) -> None:
    plat = platform_of(ctx)
    changed = put_file(ctx, SITE, _site(ctx))
    changed |= not marker_check(ctx, "horizon-loaded", _static_key(ctx))
    ctx.sh(plat.web.enable_module("wsgi") + "; " + SITE_ENABLE, quiet=True, timeout=LOOK)
    changed |= drop_unloadable_ssl_site(ctx)
    r = ctx.sh(plat.web.configtest + " 2>&1", check=False, quiet=True, timeout=LOOK)
    if not r.ok:
        raise StepError("Apache rejects its configuration.", f"{plat.web.configtest} failed",
                        f"fix {SITE}", tail=r.lines[-15:])
    active = ctx.sh(f"systemctl is-active -q {plat.web_service}", check=False, quiet=True,
                    timeout=LOOK).ok
    ensure_service(ctx, plat.web_service, restart=active and changed)
    _wait_login_page(ctx)
    marker_set(ctx, "horizon-loaded", _static_key(ctx))


def _wait_login_page(ctx, timeout: int = 60) -> None:
    """The login page answers 200 (a first request loads Django: a few seconds)."""
    url = f"http://127.0.0.1{LOGIN_PATH}"
    r = ctx.sh(f"for i in $(seq {timeout}); do c=$(curl -s -o /dev/null -w '%{{http_code}}' "
               f"--max-time 20 {q(url)}); [ \"$c\" = 200 ] && echo 200 && exit 0; sleep 1; "
               "done; echo \"$c\"; exit 1", check=False, quiet=True, timeout=timeout * 25)
    if not r.ok:
        tail = ctx.sh(f"tail -n 30 {LOG} | grep -iE 'error|exception|denied' | tail -n 10",
                      check=False, quiet=True, timeout=LOOK).lines
        raise StepError(f"Horizon's login page does not answer at {url} "
                        f"(last HTTP status {r.stdout.strip() or 'none'}).",
                        "Apache is up but the dashboard fails; its errors are below",
                        f"read {LOG} on the host", tail=tail)
    ctx.output(f"Horizon answers at {url}")


def _login_form(ctx) -> tuple[bool, str, str]:
    """(the login form renders, HTTP status, seconds it took)."""
    r = ctx.sh(f"curl -s --max-time 20 -w '\\n%{{http_code}} %{{time_total}}' "
               f"http://127.0.0.1{LOGIN_PATH}", check=False, quiet=True, timeout=LOOK)
    lines = r.stdout.strip().splitlines()
    status, _, took = (lines[-1] if lines else "").partition(" ")
    return status == "200" and 'name="password"' in r.stdout, status, took


def _verify_check(ctx) -> bool:
    return _login_form(ctx)[0]


def _verify(ctx) -> None:
    ok, status, took = _login_form(ctx)
    if not ok:
        raise StepError(f"Horizon's login page is not served (HTTP {status or 'none'}).",
                        "the dashboard does not render its login form",
                        f"read {LOG} on the host")
    ctx.output(f"Horizon's login page renders in {took or '?'} s: {dashboard_url(ctx.profile)}")


def _unsupported(ctx) -> None:
    plat = platform_of(ctx)
    raise StepError(f"Horizon cannot be installed on {plat.name} by stack-tui yet.",
                    "stack-tui knows Debian's dashboard packages only (Debian 13 and 12)",
                    "deselect Horizon, or use Debian 13 or 12")


def phases(profile, plat: Platform) -> list[Phase]:
    if plat.id not in SUPPORTED:
        return [Phase("horizon", "Horizon (dashboard)", [
            Step("horizon.platform", "Horizon needs Debian's dashboard packages",
                 run=_unsupported, check=None,
                 detail=f"{plat.name}: not supported yet; stops here with an explanation"),
        ])]
    router = "on" if self_service(profile, plat) else "off (no self-service networks)"
    return [Phase("horizon", "Horizon (dashboard)", [
        Step("horizon.settings", "local_settings.py: Keystone, memcached sessions, hosts",
             run=_settings_run, check=_settings_check, files=[SETTINGS, SNIPPET],
             detail="OPENSTACK_KEYSTONE_URL http://<endpoint host>:5000/v3, domain Default, "
                    "role member; sessions in memcached; ALLOWED_HOSTS endpoint host and "
                    f"address; WEBROOT {WEBROOT}; Neutron routers {router}"),
        Step("horizon.static", "Collect and compress the static files",
             run=_static_run, check=_static_check,
             detail="manage.py collectstatic --clear && compress --force (offline, so no "
                    "request waits for it); again whenever the settings change"),
        Step("horizon.apache", f"Serve the dashboard from {plat.web_service} at {WEBROOT}",
             run=_apache_run, check=_apache_check, files=[SITE],
             detail="openstack-dashboard-alias-only site: its own mod_wsgi daemon "
                    "(Keystone's :5000 site untouched); wait until the login page answers"),
        Step("horizon.verify", "The login page renders", run=_verify, check=_verify_check,
             detail=f"GET {LOGIN_PATH} on the host: HTTP 200 with the login form"),
    ])]


# Debian's dashboard with its Apache site; pymemcache for the memcached session backend.
PACKAGES = PerPlatform(
    deb=("openstack-dashboard-apache", "python3-pymemcache"),
    rpm=("openstack-dashboard", "python3-pymemcache"),  # its plan refuses (not Debian)
    overrides={"ubuntu": ("openstack-dashboard", "python3-pymemcache")})  # plan refuses


SERVICE = Service(
    "horizon", "Horizon", "web dashboard", phases,
    requires=("keystone", "memcached"),
    ports=(Port(80, frozenset({"apache2", "httpd"}), "Horizon dashboard (Apache)"),),
    default=False,
    packages=PACKAGES,
    summary=summary,
    configs=lambda plat: (SETTINGS, SNIPPET, SITE),
    units=lambda plat: (plat.web_service,),
    logs=lambda plat: (f"{plat.apache_log_dir}/error.log",),
)
