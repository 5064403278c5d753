"""The service catalogue for services after Glance: a service entity and its three endpoints
(look first; create what is missing, fix a wrong URL, drop duplicates), and the Apache
mod_wsgi vhost an API service is served from."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from .. import inifile
from .common import (LOOK, admin_session, api, controller_mgmt, ep, find_one, ks_base,
                     platform_of, url_host)

INTERFACES = ("public", "internal", "admin")
# Debian runs the Nova and Neutron APIs under uWSGI: the listening process is named after
# the plugin of its Python (uwsgi_python311 on Debian 12, uwsgi_python313 on Debian 13).
UWSGI = frozenset({"uwsgi", "uwsgi_python3", "uwsgi_python311", "uwsgi_python313"})


def service_url(ctx, port: int, path: str = "") -> str:
    return f"http://{url_host(ep(ctx))}:{port}{path}"


def internal_url(ctx, url: str) -> str:
    """``url`` (a public endpoint, on the endpoint host) on the controller's management
    address: where the other hosts' services (nova-compute) reach the API.  The same URL
    when the endpoint host is that address (one host, the usual case)."""
    if controller_mgmt(ctx) == ep(ctx):
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.hostname is None or parts.hostname != ep(ctx).strip("[]").lower():
        return url   # an endpoint host written otherwise: left as given
    netloc = url_host(controller_mgmt(ctx)) + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def api_host(ctx) -> str:
    """Where a host's services call the APIs (Keystone, Glance) by a URL of their config:
    the endpoint host on the controller (as on one host), the controller's management
    address on the other hosts (the endpoint host may be an address only users reach)."""
    ctrl = ctx.profile.controller
    return ep(ctx) if ctrl is None or ctrl is ctx.profile.host else controller_mgmt(ctx)


def interface_urls(ctx, url: str) -> dict[str, str]:
    """The URL of each interface: public on the endpoint host (users), internal and admin
    on the controller's management address (services on every host)."""
    inner = internal_url(ctx, url)
    return {"public": url, "internal": inner, "admin": inner}


def _state(ctx, stype: str):
    svc = find_one(ctx, "services", type=stype)
    region = ctx.profile.openstack.region
    eps = api(ctx, "GET", f"/endpoints?service_id={svc['id']}")["endpoints"] if svc else []
    return svc, [e for e in eps if e.get("region_id") == region]


def endpoints_ok(ctx, stype: str, url: str) -> bool:
    svc, eps = _state(ctx, stype)
    if not svc:
        return False
    have = {(e["interface"], e["url"].rstrip("/")) for e in eps}
    return have == {(i, u.rstrip("/")) for i, u in interface_urls(ctx, url).items()}


def ensure_endpoints(ctx, name: str, stype: str, description: str, url: str) -> None:
    """Service ``name`` of type ``stype`` with exactly one endpoint per interface: public at
    ``url``, internal and admin at the same URL on the controller's management address."""
    svc, eps = _state(ctx, stype)
    if not svc:
        ctx.output(f"creating service {name} ({stype})")
        svc = api(ctx, "POST", "/services", json={"service": {
            "name": name, "type": stype, "description": description, "enabled": True}})["service"]
    region = ctx.profile.openstack.region
    if not _region_exists(ctx, region):
        api(ctx, "POST", "/regions", json={"region": {"id": region}})
    for iface, url in interface_urls(ctx, url).items():
        want = url.rstrip("/")
        mine = [e for e in eps if e["interface"] == iface]
        keep = next((e for e in mine if e["url"].rstrip("/") == want), None)
        if keep is None and mine:
            keep = mine[0]
            ctx.output(f"updating {iface} {stype} endpoint to {url}")
            api(ctx, "PATCH", f"/endpoints/{keep['id']}", json={"endpoint": {"url": url}})
        elif keep is None:
            ctx.output(f"creating {iface} {stype} endpoint {url}")
            api(ctx, "POST", "/endpoints", json={"endpoint": {
                "service_id": svc["id"], "interface": iface, "url": url,
                "region_id": region, "enabled": True}})
        for extra in mine:
            if keep is not None and extra["id"] != keep["id"]:
                ctx.output(f"removing duplicate {iface} {stype} endpoint {extra['url']}")
                api(ctx, "DELETE", f"/endpoints/{extra['id']}")


def _region_exists(ctx, region: str) -> bool:
    sess = admin_session(ctx)
    return sess.get(f"{ks_base(ctx)}/regions/{urllib.parse.quote(region)}",
                    raise_exc=False).status_code == 200


def authtoken(ctx, user: str, secret: str) -> dict:
    """[keystone_authtoken] of a service user (the same keys as Glance's)."""
    ks = f"http://{url_host(ep(ctx))}:5000"
    return {
        ("keystone_authtoken", "www_authenticate_uri"): ks,
        ("keystone_authtoken", "auth_url"): ks,
        ("keystone_authtoken", "memcached_servers"): f"{url_host(controller_mgmt(ctx))}:11211",
        ("keystone_authtoken", "auth_type"): "password",
        ("keystone_authtoken", "project_domain_name"): "Default",
        ("keystone_authtoken", "user_domain_name"): "Default",
        ("keystone_authtoken", "project_name"): "service",
        ("keystone_authtoken", "username"): user,
        ("keystone_authtoken", "password"): inifile.oslo_value(ctx.secrets[secret]),
        ("keystone_authtoken", "region_name"): ctx.profile.openstack.region,
        ("keystone_authtoken", "service_token_roles_required"): "true",
        ("keystone_authtoken", "service_token_roles"): "service",
    }


@dataclass(frozen=True)
class WsgiLayout:
    """Where a platform's packages put one API served by Apache mod_wsgi."""
    vhost: str                   # the Apache site stack-tui writes
    vhost_enable: str            # how it is enabled ("true": conf.d needs nothing)
    distro_service: str | None   # the packaged (uWSGI) unit to keep off (None: there is none)
    wsgi_module: str             # the WSGI entry "module:name" (an application or a factory)


def wsgi_vhost(*, title: str, port: int, group: str, script: str, user: str, processes: int,
               server_name: str, log_dir: str, log: str) -> str:
    """An Apache vhost serving one WSGI application; one thread per process (as Keystone:
    the OpenStack WSGI services keep per-request context on shared objects).  Naming the
    process and application group on the alias makes mod_wsgi load the application when
    each daemon process starts, not on the first request that process happens to get (a
    cold Keystone process took seconds to answer a re-run's first token request).  The
    daemon group is defined above the alias that names it: Apache refuses the other order
    ("WSGI process group not yet configured")."""
    return f"""# Written by stack-tui: {title} on port {port} under mod_wsgi
Listen {port}

<VirtualHost *:{port}>
    ServerName {server_name}
    WSGIDaemonProcess {group} processes={processes} threads=1 user={user} group={user} display-name=%{{GROUP}} lang=C.UTF-8 locale=C.UTF-8
    WSGIScriptAlias / {script} process-group={group} application-group=%{{GLOBAL}}
    WSGIProcessGroup {group}
    WSGIApplicationGroup %{{GLOBAL}}
    WSGIPassAuthorization On
    LimitRequestBody 114688
    ErrorLogFormat "%{{cu}}t %M"
    ErrorLog {log_dir}/{log}.log
    CustomLog {log_dir}/{log}_access.log combined

    <Directory /usr/share/stack-tui>
        Require all granted
    </Directory>
</VirtualHost>
"""


# Debian's openstack-dashboard-apache (Horizon), when not told to take over port 80, enables
# the default-ssl site without mod_ssl: Apache's next configtest or reload fails on SSLEngine.
# It comes in with the packages, so the first service that tests Apache's config drops it.
UNLOADABLE_SSL_SITE = ("[ -e /etc/apache2/sites-enabled/default-ssl.conf ] && "
                       "! [ -e /etc/apache2/mods-enabled/ssl.load ]")


def unloadable_ssl_site(ctx) -> bool:
    return platform_of(ctx).web.a2en and ctx.sh(UNLOADABLE_SSL_SITE, check=False, quiet=True,
                                                timeout=LOOK).ok


def drop_unloadable_ssl_site(ctx) -> bool:
    """Disable that site (True when it was there)."""
    if not unloadable_ssl_site(ctx):
        return False
    ctx.output("disabling Debian's default-ssl site: enabled without mod_ssl (by the dashboard "
               "package), Apache would refuse its configuration")
    ctx.sh("a2dissite -q default-ssl", quiet=True, timeout=LOOK)
    return True


def transport_url(ctx) -> str:
    pw = urllib.parse.quote(ctx.secrets["rabbit_password"], safe="")
    return inifile.oslo_value(f"rabbit://openstack:{pw}@{url_host(controller_mgmt(ctx))}:5672/")


def messaging(ctx) -> dict:
    """transport_url and, on RabbitMQ 4 (Epoxy), quorum queues (classic mirroring is gone)."""
    out = {("DEFAULT", "transport_url"): transport_url(ctx)}
    for key in platform_of(ctx).quorum_queue_options:
        out[("oslo_messaging_rabbit", key)] = "true"
    return out


def service_auth(ctx, section: str, user: str, secret: str) -> dict:
    """A keystoneauth password section ([service_user], [placement], [neutron], [nova])."""
    return {
        (section, "auth_url"): f"http://{url_host(api_host(ctx))}:5000/v3",
        (section, "auth_type"): "password",
        (section, "project_domain_name"): "Default",
        (section, "user_domain_name"): "Default",
        (section, "project_name"): "service",
        (section, "username"): user,
        (section, "password"): inifile.oslo_value(ctx.secrets[secret]),
        (section, "region_name"): ctx.profile.openstack.region,
    }


def with_lines(old: str, values: dict[str, str], why: str) -> str:
    """``old`` without any line setting one of ``values``' keys, then those lines."""
    keep = [ln for ln in old.splitlines()
            if not any(ln.replace(" ", "").startswith(k + "=") for k in values)
            and not ln.startswith("# stack-tui: ")]  # ours, written again below
    while keep and not keep[-1].strip():
        keep.pop()
    body = "\n".join(keep) + ("\n\n" if keep else "")
    return body + f"# stack-tui: {why}\n" + "".join(f"{k} = {v}\n" for k, v in values.items())


def lines_ok(old: str | None, values: dict[str, str]) -> bool:
    have = [ln.strip() for ln in (old or "").splitlines()]
    return all(have.count(f"{k} = {v}") == 1 and
               sum(ln.replace(" ", "").startswith(k + "=") for ln in have) == 1
               for k, v in values.items())


# Debian runs its APIs' uWSGI with --http-socket, which closes the connection after each
# answer without saying so: a 204 (no body, Content-Length removed by `rem-header`) leaves the
# client believing the connection reusable, and a request sent on it as uWSGI closes it is
# reset.  Debian's glance, neutron and placement inis add `Connection: close`; its nova inis
# do not (measured: 76 of 8000 DELETE-then-GET pairs reset without it, none of 6000 with it).
CONNECTION_CLOSE = {"add-header": "Connection: close"}
UWSGI_WHY = ("few API processes for one host; answers say Connection: close (uWSGI closes "
             "each connection after its answer)")


def uwsgi_ok(ctx, settings: dict[str, dict[str, str]]) -> bool:
    """Each existing uWSGI ini (path -> its values) sets each key once, to the value given."""
    for path, values in settings.items():
        old = ctx.transport.read_file(path)
        if old is not None and not lines_ok(old, values):
            return False
    return True


def uwsgi_run(ctx, settings: dict[str, dict[str, str]]) -> bool:
    """Write the values into the uWSGI inis that exist; True when one changed."""
    from .common import put_file

    changed = False
    for path, values in settings.items():
        old = ctx.transport.read_file(path)
        if old is not None and not lines_ok(old, values):
            changed |= put_file(ctx, path, with_lines(old, values, UWSGI_WHY), old=old)
    return changed


def wsgi_script(what: str, entry: str) -> str:
    """A WSGI script for mod_wsgi from an entry ``module:name``: the module's own
    ``application``, or an older package's factory called once."""
    module, name = entry.split(":")
    head = f"# Written by stack-tui: {what}\n"
    if name == "application":
        return head + f"from {module} import application  # noqa: F401\n"
    return head + f"from {module} import {name}\n\napplication = {name}()\n"
