"""The OpenStack control plane as idempotent engine steps.

Every step looks before it acts.  Config files are edited key by key
(``inifile``) with a one-time backup and a redacted diff in the log.  Root
database work runs as root over the unix socket with SQL on stdin; the
service accounts are proven with PyMySQL over the SSH port forward.  Keystone
and Glance are driven with keystoneauth1 / glanceclient over port forwards.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import time
import urllib.parse
from pathlib import Path

from . import inifile, paths
from .engine import Context, Phase, Plan, Step, StepError
from .platforms import PLATFORMS, Platform, describe, detect

q = shlex.quote
MARKERS = "/var/lib/stack-tui"
POLICY_RC = "/usr/sbin/policy-rc.d"
POLICY_RC_BODY = "#!/bin/sh\n# stack-tui: no service starts during package installs\nexit 101\n"


# ---------------------------------------------------------------------------
# helpers

def platform_of(ctx: Context) -> Platform:
    pid = ctx.facts.get("platform")
    if pid in PLATFORMS:
        return PLATFORMS[pid]
    forced = ctx.profile.openstack.platform
    if forced != "auto":
        return PLATFORMS[forced]
    _detect(ctx)
    return PLATFORMS[ctx.facts["platform"]]


def mgmt(ctx: Context) -> str:
    return ctx.facts.get("mgmt_address") or ctx.profile.host.address


def ep(ctx: Context) -> str:
    return ctx.profile.endpoint_host


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def identity_url(ctx: Context) -> str:
    return f"http://{_url_host(ep(ctx))}:5000/v3/"


def image_url(ctx: Context) -> str:
    return f"http://{_url_host(ep(ctx))}:9292"


def db_url(ctx: Context, user: str, secret: str) -> str:
    """The SQLAlchemy URL as written into an oslo.config file.

    SQLAlchemy takes any character but '@' in the password and unquotes it, so only
    '@' (and '%', refused by secrets.validate) is percent-encoded: a fully quoted
    password holds '%', which Keystone's alembic config (configparser) rejects.
    '$' is doubled for oslo.config's interpolation.
    """
    pw = ctx.secrets[secret].replace("%", "%25").replace("@", "%40")
    url = f"mysql+pymysql://{user}:{pw}@{_url_host(mgmt(ctx))}/{user}?charset=utf8mb4"
    return inifile.oslo_value(url)


def forward(ctx: Context, port: int, host: str | None = None) -> int:
    return ctx.transport.forward(host or "127.0.0.1", port)


def service_failed(ctx: Context, unit: str, what: str) -> StepError:
    r = ctx.sh(f"journalctl -u {q(unit)} -n 25 --no-pager -o cat 2>&1; "
               f"systemctl status {q(unit)} --no-pager -n 0 2>&1 | head -5", check=False, quiet=True)
    return StepError(what, f"{unit} is not running; its journal is below",
                     f"fix the cause shown in the journal, then Retry (journalctl -u {unit})",
                     tail=r.lines[-30:])


def ensure_service(ctx: Context, unit: str, *, restart: bool = False) -> None:
    action = "restart" if restart else "start"
    r = ctx.sh(f"systemctl enable -q {q(unit)} 2>&1; systemctl {action} {q(unit)} 2>&1",
               check=False, timeout=180)
    if r.status != 0:
        raise service_failed(ctx, unit, f"Could not {action} {unit}.")


def service_ok(ctx: Context, unit: str) -> bool:
    r = ctx.sh(f"systemctl is-active -q {q(unit)} && systemctl is-enabled -q {q(unit)}",
               check=False, quiet=True)
    return r.status == 0


def read_remote(ctx: Context, path: str) -> str | None:
    return ctx.transport.read_file(path)


def put_file(ctx: Context, path: str, new: str, *, mode: int = 0o644, owner: str = "root",
             group: str | None = None, old: str | None = None) -> bool:
    """Write ``new`` to ``path`` if it differs; one-time backup; redacted diff to the log."""
    if old is None:
        old = read_remote(ctx, path)
    if old == new:
        return False
    if old is not None:
        ctx.sh(f"[ -e {q(path + '.stack-tui.orig')} ] || cp -p {q(path)} {q(path + '.stack-tui.orig')}",
               quiet=True)
    for line in inifile.diff(old or "", new, path, ctx.redact):
        ctx.output(line)
    ctx.transport.write_file(path, new, mode=mode, owner=owner, group=group)
    return True


def ini_target(ctx: Context, path: str, settings: dict) -> tuple[str | None, str]:
    old = read_remote(ctx, path)
    return old, inifile.set_values(old or "", settings)


def marker_check(ctx: Context, name: str, value: str) -> bool:
    cur = read_remote(ctx, f"{MARKERS}/{name}")
    return cur is not None and cur.strip() == value


def marker_set(ctx: Context, name: str, value: str) -> None:
    ctx.transport.write_file(f"{MARKERS}/{name}", value + "\n", mode=0o644)


def pkg_version(ctx: Context, pkg: str) -> str:
    plat = platform_of(ctx)
    cmd = (f"dpkg-query -W -f='${{Version}}' {q(pkg)}" if plat.family == "deb"
           else f"rpm -q --qf '%{{VERSION}}-%{{RELEASE}}' {q(pkg)}")
    return ctx.sh(cmd, check=False, quiet=True).stdout.strip()


def sql_literal(value: str) -> str:
    from pymysql.converters import escape_string

    return "'" + escape_string(value) + "'"


def root_sql(ctx: Context, sql: str, *, quiet=True):
    """Run SQL as the database root over the unix socket; SQL (and secrets in it) on stdin.

    Latin-1 on purpose: PyMySQL (under SQLAlchemy in Keystone and Glance) sends a
    password given as text in Latin-1, so the stored hash must be of those bytes.
    """
    return ctx.sh("mysql --batch --skip-column-names --default-character-set=latin1",
                  stdin=sql.encode("latin-1"), quiet=quiet, timeout=120)


# -- keystone / glance API over the forward -----------------------------------

def ks_base(ctx: Context) -> str:
    return f"http://127.0.0.1:{forward(ctx, 5000)}/v3"


def ks_session(ctx: Context, user: str, password: str, project: str):
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    auth = v3.Password(auth_url=ks_base(ctx), username=user, password=password,
                       project_name=project, user_domain_name="Default",
                       project_domain_name="Default")
    return session.Session(auth=auth, timeout=30)


def user_session(ctx: Context, user: str, password: str, project: str):
    """One keystoneauth session per (user, password, project) and run: each user's
    password is checked by Keystone once a run (bcrypt makes every check cost)."""
    key = ("session", user, password, project)
    if key not in ctx.cache:
        ctx.cache[key] = ks_session(ctx, user, password, project)
    return ctx.cache[key]


def forget_session(ctx: Context, user: str, password: str, project: str) -> None:
    ctx.cache.pop(("session", user, password, project), None)


def admin_session(ctx: Context):
    return user_session(ctx, "admin", ctx.secrets["admin_password"], "admin")


def can_auth(ctx: Context, user: str, password: str, project: str | None) -> bool:
    from keystoneauth1 import exceptions as kse

    try:
        if project is None:
            from keystoneauth1 import session
            from keystoneauth1.identity import v3

            auth = v3.Password(auth_url=ks_base(ctx), username=user, password=password,
                               user_domain_name="Default")
            return bool(session.Session(auth=auth, timeout=30).get_token())
        try:
            return bool(user_session(ctx, user, password, project).get_token())
        except Exception:
            forget_session(ctx, user, password, project)  # never keep a refused session
            raise
    except (kse.Unauthorized, kse.NotFound):
        return False
    except kse.ConnectFailure as exc:
        raise StepError("Keystone does not answer on port 5000.", str(exc),
                        "check that apache2 runs and listens on 5000 (ss -ltnp)", transient=True)


def api(ctx: Context, method: str, path: str, **kw):
    sess = admin_session(ctx)
    resp = sess.request(ks_base(ctx) + path, method, raise_exc=False, **kw)
    if resp.status_code >= 400:
        raise StepError(f"Keystone {method} {path} answered {resp.status_code}.",
                        ctx.redact(resp.text[:400]),
                        "look at /var/log/apache2/keystone.log on the host")
    return resp.json() if resp.content else {}


def find_one(ctx: Context, collection: str, **filters) -> dict | None:
    query = urllib.parse.urlencode(filters)
    items = api(ctx, "GET", f"/{collection}?{query}")[collection]
    return items[0] if items else None


def ensure_entity(ctx: Context, collection: str, singular: str, body: dict, lookup: dict) -> dict:
    found = find_one(ctx, collection, **lookup)
    if found:
        return found
    ctx.output(f"creating {singular} {body.get('name', '')}")
    return api(ctx, "POST", f"/{collection}", json={singular: body})[singular]


def has_role(ctx: Context, project_id: str, user_id: str, role_id: str) -> bool:
    # A list, not HEAD on the grant: Keystone logs a missing grant as an ERROR with a
    # traceback, which a check must not leave in a fresh install's log.
    query = urllib.parse.urlencode({"user.id": user_id, "scope.project.id": project_id,
                                    "role.id": role_id})
    return bool(api(ctx, "GET", f"/role_assignments?{query}")["role_assignments"])


def ensure_user(ctx: Context, name: str, password: str, project: str,
                roles: tuple[str, ...], check_only: bool = False) -> bool:
    """User with password and roles on project; returns True when nothing was needed."""
    user = find_one(ctx, "users", name=name, domain_id="default")
    proj = find_one(ctx, "projects", name=project, domain_id="default")
    rols = {r: find_one(ctx, "roles", name=r) for r in roles}
    ok = bool(user and proj and all(rols.values())
              and all(has_role(ctx, proj["id"], user["id"], r["id"]) for r in rols.values())
              and can_auth(ctx, name, password, project))
    if ok or check_only:
        return ok
    if proj is None:
        raise StepError(f"Project {project} is missing.", "an earlier step did not create it",
                        "run the keystone.projects step again")
    for r, found in rols.items():
        if found is None:
            rols[r] = ensure_entity(ctx, "roles", "role", {"name": r}, {"name": r})
    if user is None:
        ctx.output(f"creating user {name}")
        user = api(ctx, "POST", "/users", json={"user": {
            "name": name, "domain_id": "default", "password": password, "enabled": True}})["user"]
    elif not can_auth(ctx, name, password, None):
        ctx.output(f"updating the password of user {name}")
        api(ctx, "PATCH", f"/users/{user['id']}", json={"user": {"password": password}})
    for r, rol in rols.items():
        if not has_role(ctx, proj["id"], user["id"], rol["id"]):
            ctx.output(f"granting role {r} to {name} on project {project}")
            api(ctx, "PUT", f"/projects/{proj['id']}/users/{user['id']}/roles/{rol['id']}")
    return False


# ---------------------------------------------------------------------------
# phase: prepare

def _detect(ctx: Context) -> bool:
    text = read_remote(ctx, "/etc/os-release") or ""
    forced = ctx.profile.openstack.platform
    plat = PLATFORMS[forced] if forced != "auto" else detect(text)
    if plat is None:
        raise StepError(
            f"Unsupported system: {describe(text)}.",
            "stack-tui supports Debian 13 and 12, Ubuntu 22.04/24.04 and Rocky/Alma/CentOS Stream 9",
            "use a supported release, or force one with [openstack] platform in the profile "
            "(at your own risk)")
    changed = ctx.facts.get("platform") != plat.id
    ctx.facts["platform"] = plat.id
    ctx.facts["os"] = describe(text)
    ctx.facts["openstack_release"] = plat.openstack
    ctx.output(f"{describe(text)}: platform {plat.id}, OpenStack {plat.openstack}"
               + ("" if plat.verified else " (plan only: not yet verified on a real host)"))
    return not changed


def _hosts_state(ctx: Context) -> tuple[str, list[str], list[str]]:
    r = ctx.sh("hostname; echo ---; getent ahostsv4 \"$(hostname)\" | awk '{print $1}' | sort -u; "
               "echo ---; ip -o -4 addr show | awk '{split($4,a,\"/\"); print a[1]}'", quiet=True)
    name, resolved, have = (part.split() for part in r.stdout.split("---"))
    return name[0] if name else "", resolved, have


def _hosts_check(ctx: Context) -> bool:
    name, resolved, have = _hosts_state(ctx)
    good = [a for a in resolved if a in have and not a.startswith("127.")]
    if good:
        ctx.facts["hostname"] = name
        ctx.facts["mgmt_address"] = good[0]
        ctx.output(f"{name} resolves to {good[0]}, an address of this host")
        return True
    return False


def _hosts_run(ctx: Context) -> None:
    name, resolved, have = _hosts_state(ctx)
    addr = ctx.profile.host.address
    if addr not in have:
        real = [a for a in have if not a.startswith("127.")]
        if not real:
            raise StepError("The host has no non-loopback IPv4 address.", "", "check its network")
        addr = real[0]
    if not ctx.profile.openstack.fix_hosts:
        raise StepError(
            f"The host name {name} resolves to {', '.join(resolved) or 'nothing'}, "
            f"not to an address this host has ({', '.join(have)}).",
            "RabbitMQ's node name is rabbit@<hostname>; epmd cannot start when the name does "
            "not resolve to a local address",
            f"add '{addr} {name}' to /etc/hosts, or set fix_hosts = true in the profile "
            "(preflight --fix)")
    fix_hosts_file(ctx, name, addr)
    if not _hosts_check(ctx):
        raise StepError(f"{name} still does not resolve to {addr} after fixing /etc/hosts.",
                        "nsswitch.conf may not consult files first", "check /etc/nsswitch.conf")


def fix_hosts_file(ctx: Context, name: str, addr: str) -> bool:
    """Map ``name`` to ``addr`` in /etc/hosts, keeping every other line."""
    old = read_remote(ctx, "/etc/hosts") or ""
    out, placed = [], False
    for line in old.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and name in fields[1:] and not fields[0].startswith("127.0.0.1") \
                and ":" not in fields[0]:
            if not placed:
                out.append(f"{addr} {name}")
                placed = True
            continue
        if len(fields) >= 2 and fields[0].startswith("127.") and name in fields[1:] \
                and fields[0] != "127.0.0.1":
            continue  # Debian's 127.0.1.1 <hostname> line
        out.append(line)
    if not placed:
        out.append(f"{addr} {name}")
    return put_file(ctx, "/etc/hosts", "\n".join(out) + "\n", old=old)


def _repo_check(ctx: Context) -> bool:
    plat = platform_of(ctx)
    return ctx.sh(plat.repo_check, check=False, quiet=True).status == 0


def _repo_run(ctx: Context) -> None:
    plat = platform_of(ctx)
    for cmd in plat.repo_setup:
        ctx.sh(cmd, timeout=900)


def wanted_packages(ctx: Context) -> list[str]:
    plat = platform_of(ctx)
    svc = set(ctx.profile.openstack.services)
    out = list(plat.packages.get("base", []))
    for comp in ("mariadb", "rabbitmq", "memcached", "keystone", "glance"):
        if comp in svc:
            out += plat.packages.get(comp, [])
    return out


def _missing_packages(ctx: Context) -> list[str]:
    plat = platform_of(ctx)
    pkgs = wanted_packages(ctx)
    r = ctx.sh(plat.installed_check_cmd(pkgs), check=False, quiet=True)
    if plat.family == "deb":
        ok = {ln.split()[0] for ln in r.stdout.splitlines()
              if ln.strip().endswith(" installed")}
    else:
        ok = {p for p in pkgs if any(ln.startswith(p + "-") for ln in r.stdout.splitlines())}
    return [p for p in pkgs if p not in ok]


def _packages_check(ctx: Context) -> bool:
    missing = _missing_packages(ctx)
    if missing:
        return False
    plat = platform_of(ctx)
    if plat.family == "deb" and ctx.sh(f"grep -qs stack-tui {POLICY_RC}", check=False,
                                       quiet=True).ok:
        return False  # left behind by a killed run: the run step removes it
    if plat.distro_keystone_service and "keystone" in ctx.profile.openstack.services:
        r = ctx.sh(f"systemctl is-enabled {q(plat.distro_keystone_service)} 2>/dev/null",
                   check=False, quiet=True)
        return r.stdout.strip() == "masked"
    return True


DEBCONF = """keystone keystone/configure_db boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
keystone keystone/setup-keystone-db boolean false
glance-common glance/configure_db boolean false
glance-common glance/configure_rabbit boolean false
glance-common glance/configure_ksat boolean false
glance-api glance/configure_api-endpoint boolean false
glance-api glance/register-endpoint boolean false
"""


def _packages_run(ctx: Context) -> None:
    plat = platform_of(ctx)
    missing = _missing_packages(ctx)
    if plat.family == "deb" and not missing:
        # A killed run's policy-rc.d would keep blocking service starts for good.
        ctx.sh(f"grep -qs 'stack-tui' {POLICY_RC} && rm -f {POLICY_RC}; true", quiet=True)
    if plat.family == "deb":
        ks = plat.distro_keystone_service
        if missing:
            # A package manager still at work (e.g. the apt-get of a killed run, which goes
            # on without us) holds dpkg's lock and debconf's database: wait for it first.
            _apt(ctx, "true")
            # Packages must not start services with their default configs: we start each
            # one once, configured (no needless restarts; no uWSGI keystone on :5000).
            ctx.sh("debconf-set-selections", stdin=DEBCONF, quiet=True)
            fresh = ctx.sh("find /var/lib/apt/lists -maxdepth 1 -name '*_InRelease' -mmin -360 "
                           "| head -1", check=False, quiet=True).stdout.strip()
            if not fresh:
                ctx.output("refreshing package lists (apt-get update)")
                # No apt-internal retries: the step's own retries (with backoff) bound the wait.
                _apt(ctx, "apt-get update -q -o Acquire::Retries=0")
            if ks:
                # keystone's postinst enables its unit and fails when it is masked.
                ctx.sh(f"systemctl unmask -q {q(ks)}.service 2>/dev/null; true", quiet=True)
            ctx.transport.write_file(POLICY_RC, POLICY_RC_BODY, mode=0o755)
            try:
                _apt(ctx, "dpkg --configure -a")
                _apt(ctx, plat.install_cmd(missing))
            finally:
                ctx.sh(f"grep -qs 'stack-tui' {POLICY_RC} && rm -f {POLICY_RC}; true", quiet=True)
        if ks and "keystone" in ctx.profile.openstack.services:
            # Apache serves Keystone: the packaged uWSGI service must never grab :5000.
            # It never started (policy-rc.d), so there is no 15 s stop timeout to wait for.
            ctx.sh(f"systemctl disable -q {q(ks)}.service 2>/dev/null; "
                   f"systemctl is-active -q {q(ks)}.service && systemctl kill -s KILL {q(ks)}.service; "
                   f"systemctl mask -q {q(ks)}.service", quiet=True)
    else:
        if missing:
            _apt(ctx, plat.install_cmd(missing))
    still = _missing_packages(ctx)
    if still:
        raise StepError(f"Packages still missing after install: {' '.join(still)}.",
                        "the package manager did not install them", "see the output above")


def _apt(ctx: Context, cmd: str) -> None:
    # Another package manager's lock: wait for it with a visible countdown (found in
    # /proc/locks: no fuser, which minimal hosts lack), then explain; the step retries.
    from .preflight import lock_wait_seconds, run_lock_wait

    wait = lock_wait_seconds()
    r, holders = run_lock_wait(ctx, wait, then=cmd + " 2>&1", timeout=1800)
    if holders:
        raise StepError(f"The package manager lock is still held by {holders} after waiting "
                        f"{wait} s.", "", "", transient=True)
    # `apt-get update` exits 0 when it cannot fetch the indexes ("W: Failed to fetch"):
    # the install then failed later with a misleading "Unable to locate package".
    failed = [ln.strip() for ln in r.lines if _APT_FETCH_FAILED.search(ln)]
    if failed and (r.status != 0 or " update" in cmd):
        raise StepError(
            "Cannot reach the package repository from the host.",
            failed[0][:300],
            "check the host's outbound network, DNS (/etc/resolv.conf) and apt proxy "
            "(`apt-get update` on the host shows the same), then Retry",
            tail=r.lines[-25:], transient=True)
    if r.status != 0:
        raise StepError(f"Package command failed (exit {r.status}): {cmd}", "",
                        "", tail=r.lines[-25:])


# apt's lines for an index or package it could not download
_APT_FETCH_FAILED = re.compile(r"^(W|E): (Failed to fetch|Unable to fetch some archives|"
                               r"Some index files failed to download)")


# ---------------------------------------------------------------------------
# phase: mariadb

def _mariadb_conf(ctx: Context) -> str:
    return ("# Written by stack-tui: OpenStack settings (install guide)\n[mysqld]\n"
            f"bind-address = {mgmt(ctx)}\n"
            # innodb_file_per_table: the default, and deprecated in MariaDB 11
            "default-storage-engine = innodb\n"
            "max_connections = 4096\ncollation-server = utf8mb4_general_ci\n"
            "character-set-server = utf8mb4\n")


def _mariadb_config_check(ctx):
    return read_remote(ctx, platform_of(ctx).mariadb_conf) == _mariadb_conf(ctx)


def _mariadb_config_run(ctx):
    changed = put_file(ctx, platform_of(ctx).mariadb_conf, _mariadb_conf(ctx))
    if changed and ctx.sh("systemctl is-active -q mariadb", check=False, quiet=True).ok:
        ensure_service(ctx, "mariadb", restart=True)


def _dbs(ctx) -> list[tuple[str, str]]:
    svc = ctx.profile.openstack.services
    return [(n, f"{n}_db_password") for n in ("keystone", "glance") if n in svc]


def _db_login_ok(ctx, user: str, password: str) -> bool:
    import pymysql

    port = forward(ctx, 3306, mgmt(ctx))
    try:
        conn = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password,
                               database=user, connect_timeout=10, charset="utf8mb4")
    except pymysql.err.OperationalError as exc:
        ctx.output(f"login as {user} over the forward: {ctx.redact(str(exc.args[-1]))}")
        return False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT DATABASE(), CURRENT_USER()")
            cur.fetchone()
    finally:
        conn.close()
    return True


def _databases_check(ctx) -> bool:
    if not _dbs(ctx):
        return True
    r = root_sql(ctx, "SELECT CONCAT(User,'@',Host) FROM mysql.user;\nSHOW DATABASES;\n")
    have = set(r.stdout.split())
    for name, secret in _dbs(ctx):
        if not {name, f"{name}@localhost", f"{name}@%"} <= have:
            return False
        if not _db_login_ok(ctx, name, ctx.secrets[secret]):
            return False
    return True


def _databases_run(ctx) -> None:
    sql = []
    for name, secret in _dbs(ctx):
        pw = sql_literal(ctx.secrets[secret])
        user = sql_literal(name)
        sql.append(f"CREATE DATABASE IF NOT EXISTS `{name}`;")
        for host in ("'localhost'", "'%'"):
            sql.append(f"CREATE USER IF NOT EXISTS {user}@{host} IDENTIFIED BY {pw};")
            sql.append(f"ALTER USER {user}@{host} IDENTIFIED BY {pw};")
            sql.append(f"GRANT ALL PRIVILEGES ON `{name}`.* TO {user}@{host};")
    root_sql(ctx, "\n".join(sql) + "\n")
    ctx.output("databases, users and grants in place: "
               + ", ".join(n for n, _ in _dbs(ctx)))


def _databases_verify(ctx) -> None:
    for name, secret in _dbs(ctx):
        if not _db_login_ok(ctx, name, ctx.secrets[secret]):
            raise StepError(f"The database user {name} cannot log in over the network.",
                            "MariaDB refused the login (Access denied) after the grants were set",
                            "check bind-address in the MariaDB drop-in and the grants")


# ---------------------------------------------------------------------------
# phase: rabbitmq

# rabbitmqctl under a bound of its own (a wedged Erlang node must not hang a step),
# in a UTF-8 locale (Elixir warns and misreads non-ASCII without one).
RMQ = "LC_ALL=C.UTF-8 timeout -k 5 60 rabbitmqctl"
RMQ_TIMEOUT = 90


def _rabbit_state(ctx) -> dict:
    """One round trip: the users, openstack's permissions, and whether its password works.

    The password goes on stdin, never in argv; RabbitMQ 4's authenticate_user does not
    read stdin when -q is given, so that call has no -q (its output is discarded).
    """
    # The three start an Erlang VM each (~0.8 s): run side by side, outputs kept apart.
    r = ctx.sh("d=$(mktemp -d) && "
               f"{{ {RMQ} -s list_users </dev/null >$d/u 2>/dev/null & "
               f"{RMQ} -s list_user_permissions openstack </dev/null >$d/p 2>/dev/null & "
               f"{RMQ} authenticate_user openstack >/dev/null 2>&1 && echo auth-ok >$d/a; "
               "wait; }; awk '{print \"user\", $1}' $d/u; sed 's/^/perm /' $d/p; "
               "cat $d/a 2>/dev/null; rm -rf \"$d\"; true",
               stdin=ctx.secrets["rabbit_password"] + "\n", check=False, quiet=True,
               timeout=RMQ_TIMEOUT * 2)
    lines = r.stdout.splitlines()
    return {
        "users": {ln[5:] for ln in lines if ln.startswith("user ")},
        "perms": any(ln == "perm /\t.*\t.*\t.*" for ln in lines),
        "auth": "auth-ok" in lines,
    }


def _rabbit_check(ctx) -> bool:
    if not service_ok(ctx, "rabbitmq-server"):
        return False
    st = _rabbit_state(ctx)
    return "openstack" in st["users"] and "guest" not in st["users"] and st["perms"] \
        and st["auth"]


def _rabbit_run(ctx) -> None:
    if not service_ok(ctx, "rabbitmq-server"):
        ensure_service(ctx, "rabbitmq-server")
    st = _rabbit_state(ctx)
    pw = ctx.secrets["rabbit_password"] + "\n"
    if "openstack" not in st["users"]:
        ctx.sh(f"{RMQ} add_user openstack", stdin=pw, timeout=RMQ_TIMEOUT)
    elif not st["auth"]:
        ctx.output("user openstack exists; setting its password")
        ctx.sh(f"{RMQ} change_password openstack", stdin=pw, timeout=RMQ_TIMEOUT)
    if not st["perms"]:
        ctx.sh(f"{RMQ} set_permissions openstack '.*' '.*' '.*'", timeout=RMQ_TIMEOUT)
    if "guest" in st["users"]:
        # The default guest/guest account: only loopback may use it, but it has no place
        # in a cloud's broker.
        ctx.output("deleting RabbitMQ's default user guest")
        ctx.sh(f"{RMQ} delete_user guest", timeout=RMQ_TIMEOUT)


# ---------------------------------------------------------------------------
# phase: memcached

def _memcached_target(ctx) -> tuple[str | None, str]:
    plat = platform_of(ctx)
    old = read_remote(ctx, plat.memcached_conf)
    lines = (old or "").splitlines()
    addr = mgmt(ctx)
    if plat.memcached_style == "debian":
        out, done = [], False
        for line in lines:
            if line.strip().startswith("-l "):
                if not done:
                    out.append(f"-l {addr}")
                    done = True
                continue
            out.append(line)
        if not done:
            out.append(f"-l {addr}")
    else:
        out, done = [], False
        for line in lines:
            if line.startswith("OPTIONS="):
                out.append(f'OPTIONS="-l 127.0.0.1,::1,{addr}"')
                done = True
            else:
                out.append(line)
        if not done:
            out.append(f'OPTIONS="-l 127.0.0.1,::1,{addr}"')
    return old, "\n".join(out) + "\n"


def _memcached_check(ctx) -> bool:
    old, new = _memcached_target(ctx)
    return old == new and service_ok(ctx, "memcached")


def _memcached_run(ctx) -> None:
    old, new = _memcached_target(ctx)
    changed = put_file(ctx, platform_of(ctx).memcached_conf, new, old=old)
    active = ctx.sh("systemctl is-active -q memcached", check=False, quiet=True).ok
    ensure_service(ctx, "memcached", restart=changed and active)


# ---------------------------------------------------------------------------
# phase: keystone

KEYSTONE_CONF = "/etc/keystone/keystone.conf"


def _keystone_settings(ctx) -> dict:
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
        if ctx.sh(f"systemctl is-active -q {web}", check=False, quiet=True).ok:
            ctx.output(f"reloading {web} so Keystone reads the new configuration")
            ensure_service(ctx, web, restart=True)


def _as(user: str, cmd: str) -> str:
    return f"runuser -u {q(user)} -- {cmd}"


def _manage(ctx, user: str, cmd: str, *, secrets=None, timeout=600):
    r = ctx.sh(_as(user, cmd) + " 2>&1", secrets=secrets, check=False, timeout=timeout,
               quiet=True)
    # keystone-manage prints a harmless eventlet 'Exception ignored ... getcurrent' traceback
    shown = [ln for ln in r.lines if ln.strip()]
    noise = _eventlet_noise(shown)
    for ln in shown:
        if ln not in noise:
            ctx.output(ln)
    if r.status != 0:
        log = {"keystone": "/var/log/keystone/keystone-manage.log",
               "glance": "/var/log/glance/glance-manage.log"}.get(user, "")
        extra = ctx.sh(f"tail -n 400 {q(log)} 2>/dev/null | grep -E 'ERROR|CRITICAL|Error' | "
                       "tail -n 8", check=False, quiet=True).lines if log else []
        raise StepError(f"{cmd.split()[0]} failed (exit {r.status}).", "",
                        f"look at {log or '/var/log/' + user + '/'} on the host",
                        tail=[ln for ln in shown if ln not in noise][-20:] + extra)
    return r


def _eventlet_noise(lines: list[str]) -> set[str]:
    noise: set[str] = set()
    for i, ln in enumerate(lines):
        if ln.startswith("Exception ignored in") and "getcurrent" in " ".join(lines[i:i + 12]):
            j = i
            while j < len(lines) and (j == i or lines[j].startswith((" ", "Traceback",
                                                                     "Exception ignored",
                                                                     "AttributeError",
                                                                     "TypeError"))):
                noise.add(lines[j])
                j += 1
    return noise


def _db_sync_step(service: str, cmd: str, pkg: str) -> tuple:
    name = f"{service}.db_sync"

    def value(ctx):
        return f"{pkg_version(ctx, pkg)} {hashlib.sha256(mgmt(ctx).encode()).hexdigest()[:12]}"

    def check(ctx):
        return marker_check(ctx, name, value(ctx))

    def run(ctx):
        _manage(ctx, service, cmd)
        marker_set(ctx, name, value(ctx))

    return check, run


def _keys_check(kind):
    def check(ctx):
        return ctx.sh(f"test -s /etc/keystone/{kind}-keys/0", check=False, quiet=True).ok
    return check


def _keys_run(kind):
    def run(ctx):
        _manage(ctx, "root", f"keystone-manage {kind}_setup --keystone-user keystone "
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
    """(CPUs, memory in KiB) of the host, read once per run."""
    if "host_size" not in ctx.cache:
        r = ctx.sh("nproc; awk '/^MemTotal:/ {print $2}' /proc/meminfo", check=False,
                   quiet=True)
        nums = [int(x) for x in r.stdout.split() if x.isdigit()]
        ctx.cache["host_size"] = (nums[0], nums[1]) if len(nums) == 2 else (1, 2 * 1024 * 1024)
    return ctx.cache["host_size"]


def _vhost(ctx) -> str:
    plat = platform_of(ctx)
    procs = wsgi_processes(*host_size(ctx))
    # One thread per process: Keystone keeps the validated token's context on
    # objects its threads share, so with threads > 1 one user's request can be
    # judged with another user's roles.  Upstream's Apache config uses threads=1.
    return f"""# Written by stack-tui: Keystone (identity) on port 5000 under mod_wsgi
Listen 5000

<VirtualHost *:5000>
    ServerName {ep(ctx)}
    WSGIScriptAlias / {WSGI_KEYSTONE}
    WSGIDaemonProcess keystone-public processes={procs} threads=1 user=keystone group=keystone display-name=%{{GROUP}} lang=C.UTF-8 locale=C.UTF-8
    WSGIProcessGroup keystone-public
    WSGIApplicationGroup %{{GLOBAL}}
    WSGIPassAuthorization On
    LimitRequestBody 114688
    ErrorLogFormat "%{{cu}}t %M"
    ErrorLog {plat.apache_log_dir}/keystone.log
    CustomLog {plat.apache_log_dir}/keystone_access.log combined

    <Directory /usr/share/stack-tui>
        Require all granted
    </Directory>
</VirtualHost>
"""


def wsgi_body(plat: Platform) -> str:
    """Keystone's WSGI script: the module entry where the package has it."""
    module, name = plat.keystone_wsgi_module.split(":")
    head = "# Written by stack-tui: Keystone's public WSGI application\n"
    if name == "application":
        return head + f"from {module} import application  # noqa: F401\n"
    return head + f"from {module} import {name}\n\napplication = {name}()\n"


def _apache_files(ctx) -> list[tuple[str, str]]:
    plat = platform_of(ctx)
    return [
        (WSGI_KEYSTONE, wsgi_body(plat)),
        (plat.keystone_vhost, _vhost(ctx)),
        (plat.servername_conf, f"# Written by stack-tui\nServerName {ep(ctx)}\n"),
    ]


def _apache_check(ctx) -> bool:
    plat = platform_of(ctx)
    for path, body in _apache_files(ctx):
        if read_remote(ctx, path) != body:
            return False
    if plat.family == "deb":
        r = ctx.sh("test -e /etc/apache2/sites-enabled/keystone.conf && "
                   "test -e /etc/apache2/conf-enabled/servername.conf && "
                   "test -e /etc/apache2/mods-enabled/wsgi.load", check=False, quiet=True)
        if not r.ok:
            return False
    return service_ok(ctx, plat.web_service) and _keystone_http_ok(ctx)


def _keystone_http_ok(ctx) -> bool:
    r = ctx.sh("curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://127.0.0.1:5000/v3/",
               check=False, quiet=True)
    return r.stdout.strip() == "200"


def _apache_run(ctx) -> None:
    plat = platform_of(ctx)
    changed = False
    ctx.sh("install -d -m 755 /usr/share/stack-tui", quiet=True)
    for path, body in _apache_files(ctx):
        changed |= put_file(ctx, path, body)
    if plat.family == "deb":
        ctx.sh("a2enmod -q wsgi >/dev/null; " + plat.keystone_vhost_enable + "; "
               + plat.servername_enable, quiet=True)
    r = ctx.sh(("apache2ctl" if plat.family == "deb" else "apachectl") + " configtest 2>&1",
               check=False, quiet=True)
    if not r.ok:
        raise StepError("Apache rejects its configuration.", "apachectl configtest failed",
                        f"fix {plat.keystone_vhost}", tail=r.lines[-15:])
    active = ctx.sh(f"systemctl is-active -q {plat.web_service}", check=False, quiet=True).ok
    if active and changed:
        ensure_service(ctx, plat.web_service, restart=True)
    else:
        ensure_service(ctx, plat.web_service)
    _wait_http(ctx, "http://127.0.0.1:5000/v3/", "Keystone", plat.web_service,
               f"{plat.apache_log_dir}/keystone.log")


def _wait_http(ctx, url: str, what: str, unit: str, log: str, timeout: int = 60) -> None:
    # Poll (no fixed sleep): connection refused may last while the service starts;
    # an HTTP error that persists for 10 s means the application itself is failing.
    r = ctx.sh(f"bad=0; for i in $(seq {timeout * 5}); do "
               f"c=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {q(url)}); "
               f"case $c in 2*|3*|401) echo \"$c\"; exit 0;; 000) ;; *) bad=$((bad+1));; esac; "
               f"[ $bad -ge 50 ] && break; sleep 0.2; done; echo \"$c\"; exit 1",
               check=False, quiet=True, timeout=timeout + 30)
    if not r.ok:
        # The first error explains; later ones are often follow-ups of it.
        tail = ctx.sh(f"tail -n 2000 {q(log)} 2>/dev/null | grep -E "
                      "'[A-Za-z_.]+(Error|Exception): |denied|Permission' "
                      "| grep -v ArgsAlreadyParsed | cut -c28- | awk '!seen[$0]++' | tail -n 8; "
                      f"journalctl -u {q(unit)} -n 8 --no-pager -o cat", check=False,
                      quiet=True).lines
        raise StepError(f"{what} does not answer at {url} (last HTTP status {r.stdout.strip()}).",
                        f"{unit} is up but the application fails; its log is below",
                        f"read {log} on the host", tail=tail[-25:])
    ctx.output(f"{what} answers at {url}")


def _bootstrap_check(ctx) -> bool:
    # Before bootstrap there is no Default domain: asking Keystone would log a warning
    # ("Could not find domain: Default") into a fresh install's log.  The database says.
    r = ctx.sh("mysql --batch --skip-column-names -e \"SELECT COUNT(*) FROM keystone.user u "
               "JOIN keystone.local_user l ON l.user_id = u.id WHERE l.name = 'admin' "
               "AND u.domain_id = 'default'\" 2>/dev/null", check=False, quiet=True, timeout=60)
    if r.stdout.strip() in ("", "0"):
        return False
    if not can_auth(ctx, "admin", ctx.secrets["admin_password"], "admin"):
        return False
    return _identity_endpoints_ok(ctx)


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
    _manage(ctx, "keystone",
            "keystone-manage bootstrap --bootstrap-username admin "
            "--bootstrap-project-name admin --bootstrap-role-name admin "
            f"--bootstrap-admin-url {q(url)} --bootstrap-internal-url {q(url)} "
            f"--bootstrap-public-url {q(url)} --bootstrap-region-id {q(region)}",
            secrets={"OS_BOOTSTRAP_PASSWORD": ctx.secrets["admin_password"]})
    forget_session(ctx, "admin", ctx.secrets["admin_password"], "admin")
    if not can_auth(ctx, "admin", ctx.secrets["admin_password"], "admin"):
        raise StepError("After bootstrap, Keystone still refuses the admin password.",
                        "bootstrap did not reset it", "check /var/log/keystone/ on the host")


# The default policies (enforced from 2025.1 on) grant a project's members through the
# `member` role; the install guides' legacy `user` role grants nothing there.
DEMO_ROLES = ("member",)
# 2025.1 guides: a service user holds admin on the service project and the `service`
# role, which keystonemiddleware requires of service tokens (service_token_roles_required).
SERVICE_ROLES = ("admin", "service")


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


# ---------------------------------------------------------------------------
# phase: glance

GLANCE_CONF = "/etc/glance/glance-api.conf"
GLANCE_STAGING = "/var/lib/glance/staging/"
GLANCE_TASKS = "/var/lib/glance/tasks_work_dir/"


def _glance_user_check(ctx) -> bool:
    return ensure_user(ctx, "glance", ctx.secrets["glance_password"], "service",
                       SERVICE_ROLES, check_only=True)


def _glance_user_run(ctx) -> None:
    ensure_user(ctx, "glance", ctx.secrets["glance_password"], "service", SERVICE_ROLES)


def _image_endpoints_state(ctx):
    svc = find_one(ctx, "services", type="image")
    region = ctx.profile.openstack.region
    eps = api(ctx, "GET", f"/endpoints?service_id={svc['id']}")["endpoints"] if svc else []
    return svc, [e for e in eps if e.get("region_id") == region]


def _image_endpoints_check(ctx) -> bool:
    svc, eps = _image_endpoints_state(ctx)
    if not svc:
        return False
    have = {(e["interface"], e["url"].rstrip("/")) for e in eps}
    return have == {(i, image_url(ctx)) for i in ("public", "internal", "admin")}


def _image_endpoints_run(ctx) -> None:
    svc, eps = _image_endpoints_state(ctx)
    if not svc:
        ctx.output("creating service glance (image)")
        svc = api(ctx, "POST", "/services", json={"service": {
            "name": "glance", "type": "image", "description": "OpenStack Image",
            "enabled": True}})["service"]
    region = ctx.profile.openstack.region
    if not find_one(ctx, "regions", id=region) and not _region_exists(ctx, region):
        api(ctx, "POST", "/regions", json={"region": {"id": region}})
    for iface in ("public", "internal", "admin"):
        mine = [e for e in eps if e["interface"] == iface]
        keep = next((e for e in mine if e["url"].rstrip("/") == image_url(ctx)), None)
        if keep is None and mine:
            keep = mine[0]
            ctx.output(f"updating {iface} image endpoint to {image_url(ctx)}")
            api(ctx, "PATCH", f"/endpoints/{keep['id']}", json={"endpoint": {"url": image_url(ctx)}})
        elif keep is None:
            ctx.output(f"creating {iface} image endpoint {image_url(ctx)}")
            api(ctx, "POST", "/endpoints", json={"endpoint": {
                "service_id": svc["id"], "interface": iface, "url": image_url(ctx),
                "region_id": region, "enabled": True}})
        for extra in mine:
            if keep is not None and extra["id"] != keep["id"]:
                ctx.output(f"removing duplicate {iface} image endpoint {extra['url']}")
                api(ctx, "DELETE", f"/endpoints/{extra['id']}")


def _region_exists(ctx, region: str) -> bool:
    sess = admin_session(ctx)
    return sess.get(f"{ks_base(ctx)}/regions/{urllib.parse.quote(region)}",
                    raise_exc=False).status_code == 200


def _glance_settings(ctx) -> dict:
    ks = f"http://{_url_host(ep(ctx))}:5000"
    s = {
        ("database", "connection"): db_url(ctx, "glance", "glance_db_password"),
        ("keystone_authtoken", "www_authenticate_uri"): ks,
        ("keystone_authtoken", "auth_url"): ks,
        ("keystone_authtoken", "memcached_servers"): f"{mgmt(ctx)}:11211",
        ("keystone_authtoken", "auth_type"): "password",
        ("keystone_authtoken", "project_domain_name"): "Default",
        ("keystone_authtoken", "user_domain_name"): "Default",
        ("keystone_authtoken", "project_name"): "service",
        ("keystone_authtoken", "username"): "glance",
        ("keystone_authtoken", "password"): inifile.oslo_value(ctx.secrets["glance_password"]),
        ("keystone_authtoken", "region_name"): ctx.profile.openstack.region,
        ("keystone_authtoken", "service_token_roles_required"): "true",
        ("keystone_authtoken", "service_token_roles"): "service",
        ("paste_deploy", "flavor"): "keystone",
    }
    # Multi-store on every release (Zed has it too): the legacy stores/default_store
    # options are deprecated for removal in Epoxy.
    s.update({
        ("DEFAULT", "enabled_backends"): "fs:file",
        ("glance_store", "default_backend"): "fs",
        ("fs", "filesystem_store_datadir"): "/var/lib/glance/images/",
        # the reserved stores of interoperable import (deprecation-free since Wallaby)
        ("os_glance_staging_store", "filesystem_store_datadir"): GLANCE_STAGING,
        ("os_glance_tasks_store", "filesystem_store_datadir"): GLANCE_TASKS,
        # a legacy single-store config of an earlier install is cleaned out
        ("glance_store", "stores"): None,
        ("glance_store", "default_store"): None,
        ("glance_store", "filesystem_store_datadir"): None,
    })
    return s


def _glance_conf_check(ctx) -> bool:
    old, new = ini_target(ctx, GLANCE_CONF, _glance_settings(ctx))
    return old == new and ctx.sh(f"test -d {GLANCE_STAGING} && test -d {GLANCE_TASKS}",
                                 check=False, quiet=True).ok


def _glance_conf_run(ctx) -> None:
    old, new = ini_target(ctx, GLANCE_CONF, _glance_settings(ctx))
    ctx.sh(f"install -d -o glance -g glance -m 750 {GLANCE_STAGING} {GLANCE_TASKS}",
           quiet=True)
    if put_file(ctx, GLANCE_CONF, new, mode=0o640, owner="root", group="glance", old=old):
        ctx.cache["glance_conf_changed"] = True


def _metadefs_check(ctx) -> bool:
    # Read-only: how many namespaces the catalogue holds (0 = never loaded).
    r = ctx.sh("mysql --batch --skip-column-names -e "
               "'SELECT COUNT(*) FROM glance.metadef_namespaces' 2>/dev/null",
               check=False, quiet=True, timeout=60)
    return r.ok and r.stdout.strip().isdigit() and int(r.stdout.strip()) > 0


def _metadefs_run(ctx) -> None:
    # Horizon's image-metadata forms and Tempest's metadefs tests need the catalogue;
    # loading it only when empty keeps a re-run from reloading it.
    _manage(ctx, "glance", "glance-manage db_load_metadefs")


def _glance_service_check(ctx) -> bool:
    plat = platform_of(ctx)
    if not service_ok(ctx, plat.glance_service):
        return False
    # A running glance-api started before its config last changed must be restarted.
    r = ctx.sh(f"test $(stat -c %Y {GLANCE_CONF}) -le "
               f"$(date -d \"$(systemctl show -p ActiveEnterTimestamp --value {plat.glance_service})\" +%s)"
               " && curl -s -o /dev/null --max-time 5 http://127.0.0.1:9292/", check=False, quiet=True)
    return r.ok


def _glance_service_run(ctx) -> None:
    plat = platform_of(ctx)
    active = ctx.sh(f"systemctl is-active -q {plat.glance_service}", check=False, quiet=True).ok
    ensure_service(ctx, plat.glance_service, restart=active)
    _wait_http(ctx, "http://127.0.0.1:9292/", "Glance", plat.glance_service,
               "/var/log/glance/glance-api.log")


# ---------------------------------------------------------------------------
# phase: image

def glance_client(ctx, session=None):
    from glanceclient import Client

    return Client("2", session=session or admin_session(ctx),
                  endpoint=f"http://127.0.0.1:{forward(ctx, 9292)}")


def image_source(ctx) -> Path:
    img = ctx.profile.image
    if img.file:
        path = Path(img.file).expanduser()
        if not path.is_file():
            raise StepError(f"The image file {path} does not exist.", "",
                            "fix [image] file in the profile")
        return path
    if not img.url:
        raise StepError("The profile names no image file or URL.", "", "set [image] file or url")
    dest = paths.cache_dir() / "images" / hashlib.sha256(img.url.encode()).hexdigest()[:16]
    if not dest.exists():
        import urllib.request

        dest.parent.mkdir(parents=True, exist_ok=True)
        ctx.output(f"downloading {img.url}")
        tmp = dest.with_suffix(".part")
        try:
            with urllib.request.urlopen(img.url, timeout=60) as resp, open(tmp, "wb") as fh:
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                while chunk := resp.read(1 << 20):
                    fh.write(chunk)
                    done += len(chunk)
                    ctx.progress(done, total or done, "download")
        except OSError as exc:
            raise StepError(f"Could not download the image {img.url}.", str(exc),
                            "check the URL, or download it yourself and set [image] file",
                            transient=True) from None
        tmp.replace(dest)
    return dest


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _image_check(ctx) -> bool:
    md5 = file_md5(image_source(ctx))
    gc = glance_client(ctx)
    return any(i.get("checksum") == md5 and i.get("status") == "active"
               for i in gc.images.list(filters={"name": ctx.profile.image.name}))


def _image_run(ctx) -> None:
    src = image_source(ctx)
    md5 = file_md5(src)
    img = ctx.profile.image
    gc = glance_client(ctx)
    for old in list(gc.images.list(filters={"name": img.name})):
        if old.get("status") != "active" or old.get("checksum") != md5:
            if "stack-tui" in (old.get("tags") or []):
                ctx.output(f"removing stale image {old['id']} ({old.get('status')})")
                gc.images.delete(old["id"])
    image = gc.images.create(name=img.name, disk_format=img.disk_format,
                             container_format=img.container_format,
                             visibility=img.visibility, tags=["stack-tui"])
    size = src.stat().st_size
    ctx.output(f"uploading {src.name} ({size} bytes) as {img.name} ({image['id']})")

    class Progress:
        def __init__(self, fh):
            self.fh, self.done = fh, 0

        def read(self, n=-1):
            if ctx.cancel.is_set():
                raise StepError("Image upload cancelled.", "", "Retry uploads it again")
            data = self.fh.read(n)
            self.done += len(data)
            ctx.progress(self.done, size, "upload")
            return data

    with open(src, "rb") as fh:
        gc.images.upload(image["id"], Progress(fh), image_size=size)
    deadline = time.monotonic() + 300
    while True:
        cur = gc.images.get(image["id"])
        if cur["status"] == "active":
            break
        if cur["status"] in ("killed", "deleted", "deactivated") or time.monotonic() > deadline:
            tail = ctx.sh("tail -n 20 /var/log/glance/glance-api.log", check=False,
                          quiet=True).lines
            raise StepError(f"The image {img.name} ended up {cur['status']}, not active.",
                            "Glance could not store it", "check the store settings and disk space",
                            tail=tail)
        time.sleep(0.3)
    if cur.get("checksum") != md5:
        raise StepError("The uploaded image's checksum differs from the local file.",
                        f"expected {md5}, Glance says {cur.get('checksum')}", "Retry the upload")
    ctx.output(f"image {img.name} is active (md5 {md5})")


# ---------------------------------------------------------------------------
# phase: finish

def openrc(ctx, user: str, project: str, password: str) -> str:
    lines = [
        "# Written by stack-tui",
        "export OS_PROJECT_DOMAIN_NAME=Default",
        "export OS_USER_DOMAIN_NAME=Default",
        f"export OS_PROJECT_NAME={q(project)}",
        f"export OS_USERNAME={q(user)}",
        f"export OS_PASSWORD={q(password)}",
        f"export OS_AUTH_URL={q(identity_url(ctx).rstrip('/'))}",
        f"export OS_REGION_NAME={q(ctx.profile.openstack.region)}",
        "export OS_IDENTITY_API_VERSION=3",
        "export OS_IMAGE_API_VERSION=2",
    ]
    return "\n".join(lines) + "\n"


def rc_files(ctx) -> dict[str, str]:
    out = {"admin-openrc.sh": openrc(ctx, "admin", "admin", ctx.secrets["admin_password"])}
    if ctx.profile.openstack.demo and "keystone" in ctx.profile.openstack.services:
        out["demo-openrc.sh"] = openrc(ctx, "demo", "demo", ctx.secrets["demo_password"])
    return out


def _yaml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def clouds_yaml(ctx) -> str:
    name = ctx.profile.name
    users = [("", "admin", "admin", ctx.secrets["admin_password"])]
    if ctx.profile.openstack.demo:
        users.append(("-demo", "demo", "demo", ctx.secrets["demo_password"]))
    out = ["# Written by stack-tui", "clouds:"]
    for suffix, user, project, pw in users:
        out += [
            f"  {_yaml_str(name + suffix)}:",
            "    auth:",
            f"      auth_url: {_yaml_str(identity_url(ctx).rstrip('/'))}",
            f"      username: {_yaml_str(user)}",
            f"      password: {_yaml_str(pw)}",
            f"      project_name: {_yaml_str(project)}",
            "      user_domain_name: Default",
            "      project_domain_name: Default",
            f"    region_name: {_yaml_str(ctx.profile.openstack.region)}",
            "    identity_api_version: 3",
            "    image_api_version: 2",
            "    interface: public",
        ]
    return "\n".join(out) + "\n"


def local_dir(ctx) -> Path:
    return paths.data_dir() / "clouds" / ctx.profile.name


def remote_home(ctx) -> str:
    user = ctx.profile.host.user
    if user == "root":
        return "/root"
    r = ctx.sh(f"getent passwd {q(user)} | cut -d: -f6", quiet=True)
    return r.stdout.strip() or f"/home/{user}"


def _openrc_check(ctx) -> bool:
    home = remote_home(ctx)
    for name, body in rc_files(ctx).items():
        if read_remote(ctx, f"{home}/{name}") != body:
            return False
    d = local_dir(ctx)
    wanted = {**rc_files(ctx), "clouds.yaml": clouds_yaml(ctx)}
    for name, body in wanted.items():
        p = d / name
        if not p.exists() or p.read_text(encoding="utf-8") != body or p.stat().st_mode & 0o077:
            return False
    return True


def _openrc_run(ctx) -> None:
    from .secrets import atomic_write

    home = remote_home(ctx)
    user = ctx.profile.host.user
    for name, body in rc_files(ctx).items():
        if read_remote(ctx, f"{home}/{name}") != body:
            ctx.output(f"writing {home}/{name} on the host (0600)")
            ctx.transport.write_file(f"{home}/{name}", body, mode=0o600, owner=user)
    d = local_dir(ctx)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, body in {**rc_files(ctx), "clouds.yaml": clouds_yaml(ctx)}.items():
        atomic_write(d / name, body.encode("utf-8"), mode=0o600)
        ctx.output(f"saved {d / name} (0600)")
    ctx.facts["local_files"] = str(d)


def verify_cloud(ctx) -> list[tuple[str, bool, str]]:
    """The end-of-run checks, each (what, ok, detail)."""
    results = []
    svc = set(ctx.profile.openstack.services)

    def add(what, ok, detail=""):
        results.append((what, bool(ok), detail))
        ctx.output(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail else ""))

    if "keystone" in svc:
        admin = admin_session(ctx)
        try:
            admin.get_token()
            add("token as admin", True)
        except Exception as exc:  # noqa: BLE001
            add("token as admin", False, ctx.redact(str(exc)))
            return results
        demo_ok = False
        if ctx.profile.openstack.demo:
            demo_ok = can_auth(ctx, "demo", ctx.secrets["demo_password"], "demo")
            add("token as demo", demo_ok)
        catalog = admin.auth.get_access(admin).service_catalog.catalog
        types = sorted({c["type"] for c in catalog})
        add("catalog has identity", "identity" in types, ", ".join(types))
        if "glance" in svc:
            add("catalog has image", "image" in types)
            try:
                imgs = [i for i in glance_client(ctx).images.list(
                    filters={"name": ctx.profile.image.name})]
                active = [i for i in imgs if i.get("status") == "active"]
                add(f"image {ctx.profile.image.name} active", bool(active),
                    f"{len(active)} active of {len(imgs)}")
            except Exception as exc:  # noqa: BLE001
                add("image list", False, ctx.redact(str(exc)))
            if demo_ok:
                # A project member may list images under the default policies: proves
                # demo's role, not only its password.
                try:
                    demo = user_session(ctx, "demo", ctx.secrets["demo_password"], "demo")
                    n = len(list(glance_client(ctx, demo).images.list()))
                    add("demo lists images", True, f"{n} visible")
                except Exception as exc:  # noqa: BLE001
                    add("demo lists images", False, ctx.redact(str(exc)))
    ctx.facts["verification"] = [list(r) for r in results]
    return results


def _verify_check(ctx) -> bool:
    return all(ok for _, ok, _ in verify_cloud(ctx))


def _verify_run(ctx) -> None:
    bad = [f"{w} ({d})" if d else w for w, ok, d in verify_cloud(ctx) if not ok]
    if bad:
        raise StepError("Verification failed: " + "; ".join(bad) + ".",
                        "the cloud does not yet answer as it should",
                        "look at the failing check's service log, then Retry")


# ---------------------------------------------------------------------------
# the plan

def build_plan(profile, platform_id: str | None = None) -> Plan:
    """All phases for the profile.  ``platform_id`` only shapes plan text."""
    svc = set(profile.openstack.services)
    pid = platform_id or (profile.openstack.platform if profile.openstack.platform != "auto"
                          else "debian-13")
    plat = PLATFORMS[pid]
    pkgs = list(plat.packages.get("base", []))
    for comp in ("mariadb", "rabbitmq", "memcached", "keystone", "glance"):
        if comp in svc:
            pkgs += plat.packages.get(comp, [])
    ks_sync_check, ks_sync_run = _db_sync_step("keystone", "keystone-manage db_sync",
                                               plat.packages["keystone"][0])
    gl_sync_check, gl_sync_run = _db_sync_step("glance", "glance-manage db_sync",
                                               plat.packages["glance"][0])
    from .preflight import phase as preflight_phase

    phases: list[Phase] = [preflight_phase()]  # first: blocks before anything is installed

    prepare = [
        Step("prepare.detect", "Detect the distribution and release",
             run=lambda c: _detect(c), check=_detect,
             detail="read /etc/os-release; pick the platform profile"),
        Step("prepare.hostname", "Make the host name resolve to a local address",
             run=_hosts_run, check=_hosts_check,
             detail="getent hosts $(hostname); fix /etc/hosts when the profile allows it",
             files=["/etc/hosts"]),
    ]
    if plat.repo_setup:
        prepare.append(Step("prepare.repo", f"Enable the OpenStack {plat.openstack} repository",
                            run=_repo_run, check=_repo_check, retries=3,
                            detail="; ".join(plat.repo_setup)))
    prepare.append(Step(
        "prepare.packages", "Install the packages (one transaction)",
        run=_packages_run, check=_packages_check, retries=3,
        detail=(("debconf-set-selections (no automatic db/endpoint setup); "
                 + "policy-rc.d blocks service starts during the install; "
                 + (f"then systemctl mask {plat.distro_keystone_service} (Apache serves Keystone); "
                    if plat.distro_keystone_service else ""))
                if plat.family == "deb" else "") + plat.install_cmd(pkgs),
        files=[POLICY_RC] if plat.family == "deb" else []))
    phases.append(Phase("prepare", "Prepare the host", prepare))

    if "mariadb" in svc:
        phases.append(Phase("mariadb", "MariaDB", [
            Step("mariadb.config", "OpenStack settings for MariaDB", run=_mariadb_config_run,
                 check=_mariadb_config_check, files=[plat.mariadb_conf],
                 detail="bind-address = management address, utf8mb4, max_connections = 4096"),
            Step("mariadb.service", "Start and enable MariaDB",
                 run=lambda c: ensure_service(c, "mariadb"),
                 check=lambda c: service_ok(c, "mariadb"), detail="systemctl enable --now mariadb"),
            Step("mariadb.databases", "Databases, users and grants",
                 run=_databases_run, check=_databases_check, verify=_databases_verify,
                 detail="CREATE DATABASE keystone/glance; users @'localhost' and @'%' with "
                        "passwords ******** (SQL on stdin as root over the unix socket); "
                        "login proven with PyMySQL over the SSH port forward"),
        ]))
    if "rabbitmq" in svc:
        phases.append(Phase("rabbitmq", "RabbitMQ", [
            Step("rabbitmq.user", "Start RabbitMQ; user openstack with .* permissions",
                 run=_rabbit_run, check=_rabbit_check,
                 detail="systemctl enable --now rabbitmq-server; rabbitmqctl add_user / "
                        "change_password openstack (password on stdin); set_permissions .* .* .*; "
                        "delete_user guest"),
        ]))
    if "memcached" in svc:
        phases.append(Phase("memcached", "Memcached", [
            Step("memcached.config", "Listen on the management address; start and enable",
                 run=_memcached_run, check=_memcached_check, files=[plat.memcached_conf],
                 detail="-l <management address>; systemctl enable --now memcached"),
        ]))
    if "keystone" in svc:
        phases.append(Phase("keystone", "Keystone (identity)", [
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
                 files=[WSGI_KEYSTONE, plat.keystone_vhost, plat.servername_conf],
                 detail=f"mod_wsgi vhost on :5000 (ServerName set); systemctl enable --now "
                        f"{plat.web_service}; wait until /v3 answers"),
            Step("keystone.bootstrap", "Bootstrap admin user, role and identity endpoints",
                 run=_bootstrap_run, check=_bootstrap_check,
                 detail="keystone-manage bootstrap (password in OS_BOOTSTRAP_PASSWORD via stdin); "
                        "public/internal/admin endpoints http://<endpoint host>:5000/v3/"),
            Step("keystone.projects", "Projects service and demo, role user, demo user",
                 run=_projects_run, check=_projects_check,
                 detail="keystoneauth1 over the port forward: look up, then create what is missing"),
        ]))
    if "glance" in svc:
        phases.append(Phase("glance", "Glance (images)", [
            Step("glance.user", "User glance with role admin on project service",
                 run=_glance_user_run, check=_glance_user_check,
                 detail="keystoneauth1: user glance, password ********, admin on service"),
            Step("glance.endpoints", "Service image and its three endpoints on 9292",
                 run=_image_endpoints_run, check=_image_endpoints_check,
                 detail="service glance (type image); public/internal/admin http://<endpoint host>:9292"),
            Step("glance.config", "glance-api.conf: database, keystone_authtoken, store",
                 run=_glance_conf_run, check=_glance_conf_check, files=[GLANCE_CONF],
                 detail="[database], [keystone_authtoken] (memcached), [paste_deploy] flavor=keystone, "
                        + "enabled_backends=fs:file, reserved staging/tasks stores"),
            Step("glance.db_sync", "Create the Glance database schema", run=gl_sync_run,
                 check=gl_sync_check,
                detail="runuser -u glance -- glance-manage db_sync"),
            Step("glance.metadefs", "Load the metadata definitions catalogue",
                 run=_metadefs_run, check=_metadefs_check,
                 detail="runuser -u glance -- glance-manage db_load_metadefs "
                        "(only when glance.metadef_namespaces is empty)"),
            Step("glance.service", f"Start and enable {plat.glance_service}",
                 run=_glance_service_run, check=_glance_service_check,
                 detail=f"systemctl enable --now {plat.glance_service}; wait until :9292 answers"),
        ]))
        phases.append(Phase("image", "Image", [
            Step("image.upload", f"Upload image {profile.image.name}", run=_image_run,
                 check=_image_check, retries=1,
                 detail=f"glanceclient over the port forward: "
                        f"{profile.image.file or profile.image.url or '(no image file or URL set)'} "
                        f"({profile.image.disk_format}/{profile.image.container_format}, "
                        f"{profile.image.visibility}); skip when the same name and checksum exist"),
        ]))
    if "keystone" in svc:
        phases.append(Phase("finish", "Finish and verify", [
            Step("finish.openrc", "admin-openrc.sh, demo-openrc.sh and clouds.yaml",
                 run=_openrc_run, check=_openrc_check,
                 files=["~/admin-openrc.sh", "~/demo-openrc.sh"],
                 detail="on the host (0600) and locally under the profile's data dir (0600)"),
            Step("finish.verify", "Verify: tokens, catalog, image active",
                 run=_verify_run, check=_verify_check,
                 detail="keystoneauth1 token as admin and demo; catalog has identity and image; "
                        "glanceclient image list shows the image active"),
        ]))
    return Plan(phases, platform=plat.id)
