"""Helpers every service module uses: addresses and URLs, services and files on the
host, markers, SQL as root, Keystone's API over the port forward, users and roles,
the *-manage tools, HTTP readiness.

Every step looks before it acts.  Config files are edited key by key
(``inifile``) with a one-time backup and a redacted diff in the log.  Root
database work runs as root over the unix socket with SQL on stdin; the
service accounts are proven with PyMySQL over the SSH port forward.  Keystone
and Glance are driven with keystoneauth1 / glanceclient over port forwards."""

from __future__ import annotations

import hashlib
import shlex
import urllib.parse

from .. import inifile
from ..engine import Context, StepError
from ..platforms import PLATFORMS, Platform, describe, detect
from .units import (LOOK, MOMENT, SERVICE, SETTLE, SQL, ensure_service,  # noqa: F401
                    service_failed, service_ok, stays_up, url_host)


q = shlex.quote
MARKERS = "/var/lib/stack-tui"
POLICY_RC = "/usr/sbin/policy-rc.d"
POLICY_RC_BODY = "#!/bin/sh\n# stack-tui: no service starts during package installs\nexit 101\n"



def platform_of(ctx: Context) -> Platform:
    pid = ctx.facts.get("platform")
    if pid in PLATFORMS:
        return PLATFORMS[pid]
    forced = ctx.profile.openstack.platform
    if forced != "auto":
        return PLATFORMS[forced]
    detect_platform(ctx)
    return PLATFORMS[ctx.facts["platform"]]


def mgmt(ctx: Context) -> str:
    """The address the services talk on: what prepare.hostname recorded; before that, the
    profile's management address, else the SSH address."""
    return (ctx.facts.get("mgmt_address") or ctx.profile.host.mgmt_address
            or ctx.profile.host.address)


def controller_mgmt(ctx: Context) -> str:
    """The controller's management address, where a host's services reach the database, the
    queue, memcached and the APIs: on the controller its own ``mgmt``; on another host what
    the controller's prepare.hostname recorded (``ctx.controller_facts``), else the
    controller's configured management address, else its SSH address."""
    ctrl = ctx.profile.controller
    if ctrl is None or ctrl is ctx.profile.host:
        return mgmt(ctx)
    return (ctx.controller_facts.get("mgmt_address") or ctrl.mgmt_address or ctrl.address)


def ep(ctx: Context) -> str:
    return ctx.profile.endpoint_host


def identity_url(ctx: Context) -> str:
    return f"http://{url_host(ep(ctx))}:5000/v3/"


def image_url(ctx: Context) -> str:
    return f"http://{url_host(ep(ctx))}:9292"


def db_url(ctx: Context, user: str, secret: str) -> str:
    """The SQLAlchemy URL as written into an oslo.config file.

    SQLAlchemy takes any character but '@' in the password and unquotes it, so only
    '@' and '%' would be percent-encoded (secrets.validate refuses both: '%40' broke
    keystone-manage db_sync on a real host, as '%' does): a fully quoted
    password holds '%', which Keystone's alembic config (configparser) rejects.
    '$' is doubled for oslo.config's interpolation.
    """
    pw = ctx.secrets[secret].replace("%", "%25").replace("@", "%40")
    url = f"mysql+pymysql://{user}:{pw}@{url_host(mgmt(ctx))}/{user}?charset=utf8mb4"
    return inifile.oslo_value(url)


def forward(ctx: Context, port: int, host: str | None = None) -> int:
    return ctx.transport.forward(host or "127.0.0.1", port)


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
               quiet=True, timeout=LOOK)
    for line in inifile.diff(old or "", new, path, ctx.redact):
        ctx.output(line)
    ctx.transport.write_file(path, new, mode=mode, owner=owner, group=group)
    return True


def one_line(where: str, value: str, fix: str) -> str:
    """``value`` once it is known to stay one line of a config file (the last line of
    defence: the profile refuses such values long before); else a StepError saying
    where it was going and what to fix."""
    try:
        inifile.check_line(where, value)
    except inifile.UnsafeValue as exc:
        raise StepError(f"A value for {where} cannot be written.", str(exc), fix) from None
    return value


def one_line_settings(path: str, settings: dict) -> dict:
    """``settings`` for ``path`` once every value is known to stay one line of it (the last
    line of defence); else a StepError naming the file, section and key."""
    try:
        return inifile.one_line(path, settings)
    except inifile.UnsafeValue as exc:
        raise StepError(f"A setting for {path} cannot be written.", str(exc),
                        "fix the profile value it comes from (endpoint host, region)") from None


def ini_target(ctx: Context, path: str, settings: dict) -> tuple[str | None, str]:
    old = read_remote(ctx, path)
    return old, inifile.set_values(old or "", settings)


def marker_check(ctx: Context, name: str, value: str) -> bool:
    cur = read_remote(ctx, f"{MARKERS}/{name}")
    return cur is not None and cur.strip() == value


def marker_set(ctx: Context, name: str, value: str) -> None:
    ctx.transport.write_file(f"{MARKERS}/{name}", value + "\n", mode=0o644)


def pkg_version(ctx: Context, pkg: str) -> str:
    return ctx.sh(platform_of(ctx).pm.version_cmd(pkg), check=False, quiet=True,
                  timeout=LOOK).stdout.strip()


def sql_literal(value: str) -> str:
    from pymysql.converters import escape_string

    return "'" + escape_string(value) + "'"


def root_sql(ctx: Context, sql: str, *, quiet=True):
    """Run SQL as the database root over the unix socket; SQL (and secrets in it) on stdin.

    Latin-1 on purpose: PyMySQL (under SQLAlchemy in Keystone and Glance) sends a
    password given as text in Latin-1, so the stored hash must be of those bytes.
    """
    return ctx.sh("mysql --batch --skip-column-names --default-character-set=latin1",
                  stdin=sql.encode("latin-1"), quiet=quiet, timeout=SQL)


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
    password is checked by Keystone once a run (bcrypt makes every check cost).

    Checks may call this: ``ctx.cache`` is a per-run memo of read-only objects (a
    session only reads until a step's run uses it to write), never state on the host
    or in the run's facts, so a check that fills it stays pure."""
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


class KeystoneAnswered(StepError):
    """Keystone's API refused a request; ``status`` is its HTTP status."""

    def __init__(self, what: str, why: str, hint: str, status: int):
        super().__init__(what, why, hint)
        self.status = status


def api(ctx: Context, method: str, path: str, **kw):
    sess = admin_session(ctx)
    resp = sess.request(ks_base(ctx) + path, method, raise_exc=False, **kw)
    if resp.status_code >= 400:
        raise KeystoneAnswered(f"Keystone {method} {path} answered {resp.status_code}.",
                               ctx.redact(resp.text[:400]),
                               "look at /var/log/keystone/keystone.log on the host",
                               resp.status_code)
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




def _as(user: str, cmd: str) -> str:
    return f"runuser -u {q(user)} -- {cmd}"




def manage(ctx, user: str, cmd: str, *, secrets=None, timeout=600):
    r = ctx.sh(_as(user, cmd) + " 2>&1", secrets=secrets, check=False, timeout=timeout,
               quiet=True)
    # keystone-manage prints a harmless eventlet 'Exception ignored ... getcurrent' traceback
    shown = [ln for ln in r.lines if ln.strip()]
    noise = eventlet_noise(shown)
    for ln in shown:
        if ln not in noise:
            ctx.output(ln)
    if r.status != 0:
        # The *-manage tools often fail silently on the terminal and log the cause to the
        # service's log file, which differs by package (Debian's keystone-manage writes to
        # keystone.log): the newest log in the service's directory is the one just written.
        found = ctx.sh(f"ls -t /var/log/{q(user)}/*.log 2>/dev/null | head -n 1; "
                       f"f=$(ls -t /var/log/{q(user)}/*.log 2>/dev/null | head -n 1); "
                       "[ -n \"$f\" ] && tail -n 400 \"$f\" | grep -E 'ERROR|CRITICAL|Error' "
                       "| tail -n 8", check=False, quiet=True, timeout=LOOK).lines
        log, extra = (found[0], found[1:]) if found else (f"/var/log/{user}/", [])
        raise StepError(f"{cmd.split()[0]} failed (exit {r.status}).", "",
                        f"look at {log} on the host",
                        tail=[ln for ln in shown if ln not in noise][-20:] + extra)
    return r


def eventlet_noise(lines: list[str]) -> set[str]:
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




def db_sync_step(service: str, cmd: str, pkg: str) -> tuple:
    name = f"{service}.db_sync"

    def value(ctx):
        return f"{pkg_version(ctx, pkg)} {hashlib.sha256(mgmt(ctx).encode()).hexdigest()[:12]}"

    def check(ctx):
        return marker_check(ctx, name, value(ctx))

    def run(ctx):
        manage(ctx, service, cmd)
        marker_set(ctx, name, value(ctx))

    return check, run


def wait_http(ctx, url: str, what: str, unit: str, log: str, timeout: int = 60) -> None:
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
                      quiet=True, timeout=LOOK).lines
        raise StepError(f"{what} does not answer at {url} (last HTTP status {r.stdout.strip()}).",
                        f"{unit} is up but the application fails; its log is below",
                        f"read {log} on the host", tail=tail[-25:])
    ctx.output(f"{what} answers at {url}")


# The default policies (enforced from 2025.1 on) grant a project's members through the
# `member` role; the install guides' legacy `user` role grants nothing there.
DEMO_ROLES = ("member",)


# 2025.1 guides: a service user holds admin on the service project and the `service`
# role, which keystonemiddleware requires of service tokens (service_token_roles_required).
SERVICE_ROLES = ("admin", "service")


def detect_platform(ctx: Context, check_only: bool = False) -> bool:
    """Which platform the host is; True when the run's facts already say so.

    ``check_only`` (prepare.detect's check) only reads: it compares the host with the
    recorded facts and writes nothing.  Without it (the step's run, or a caller that
    needs the platform before prepare.detect ran) the facts are recorded."""
    text = read_remote(ctx, "/etc/os-release") or ""
    forced = ctx.profile.openstack.platform
    plat = PLATFORMS[forced] if forced != "auto" else detect(text)
    if plat is None:
        raise StepError(
            f"Unsupported system: {describe(text)}.",
            "stack-tui supports Debian 13 and 12, Ubuntu 22.04/24.04 and Rocky/Alma/CentOS Stream 9",
            "use a supported release, or force one with [openstack] platform in the profile "
            "(at your own risk)")
    known = (ctx.facts.get("platform"), ctx.facts.get("os"),
             ctx.facts.get("openstack_release")) == (plat.id, describe(text), plat.openstack)
    if check_only:
        return known
    changed = ctx.facts.get("platform") != plat.id
    ctx.facts["platform"] = plat.id
    ctx.facts["os"] = describe(text)
    ctx.facts["openstack_release"] = plat.openstack
    ctx.output(f"{describe(text)}: platform {plat.id}, OpenStack {plat.openstack}"
               + ("" if plat.verified else " (plan only: not yet verified on a real host)"))
    return not changed


def fix_hosts_file(ctx: Context, name: str, addr: str) -> bool:
    """Map ``name`` to ``addr`` in /etc/hosts, keeping every other line."""
    for value in (name, addr):
        one_line("a line of /etc/hosts", value, "check the host name and host.address")
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
