"""MariaDB: the OpenStack settings, the service, databases, users and grants."""

from __future__ import annotations

import re

from ..engine import Context, Phase, Step, StepError
from ..platforms import Platform
from .base import PerPlatform, Service, Port, Rule
from .common import (
    LOOK, one_line, ensure_service, forward, mgmt, platform_of, put_file, read_remote, root_sql, service_ok,
    sql_literal,
)


PORT = 3306
# stack-tui's drop-in with the OpenStack settings
CONF: PerPlatform[str] = PerPlatform(deb="/etc/mysql/mariadb.conf.d/99-openstack.cnf",
                                     rpm="/etc/my.cnf.d/openstack.cnf")
PACKAGES = PerPlatform(deb=("mariadb-server", "python3-pymysql"),
                       rpm=("mariadb", "mariadb-server", "python3-PyMySQL"))


def _mariadb_conf(ctx: Context) -> str:
    addr = one_line(f"bind-address in {CONF(platform_of(ctx))}", mgmt(ctx),
                    "fix host.address in the profile")
    return ("# Written by stack-tui: OpenStack settings (install guide)\n[mysqld]\n"
            f"bind-address = {addr}\n"
            # innodb_file_per_table: the default, and deprecated in MariaDB 11
            "default-storage-engine = innodb\n"
            "max_connections = 4096\ncollation-server = utf8mb4_general_ci\n"
            "character-set-server = utf8mb4\n")


def _mariadb_config_check(ctx):
    return read_remote(ctx, CONF(platform_of(ctx))) == _mariadb_conf(ctx)


def _mariadb_config_run(ctx):
    changed = put_file(ctx, CONF(platform_of(ctx)), _mariadb_conf(ctx))
    if changed and ctx.sh("systemctl is-active -q mariadb", check=False, quiet=True,
                          timeout=LOOK).ok:
        _start(ctx, restart=True)


def _start(ctx, restart: bool = False) -> None:
    """(Re)start MariaDB and see it stay up and answer on its bind-address."""
    ensure_service(ctx, "mariadb", restart=restart, port=PORT, host=mgmt(ctx))


def _dbs(ctx) -> list[tuple[str, str]]:
    return ctx.profile.databases()


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


def phases(profile, plat: Platform) -> list[Phase]:
    """The mariadb phase as the plan shows and runs it."""
    return [Phase("mariadb", "MariaDB", [
        Step("mariadb.config", "OpenStack settings for MariaDB", run=_mariadb_config_run,
             check=_mariadb_config_check, files=[CONF(plat)],
             detail="bind-address = management address, utf8mb4, max_connections = 4096"),
        Step("mariadb.service", "Start and enable MariaDB",
             run=_start,
             check=lambda c: service_ok(c, "mariadb"), detail="systemctl enable --now mariadb"),
        Step("mariadb.databases", "Databases, users and grants",
             run=_databases_run, check=_databases_check, verify=_databases_verify,
             detail="CREATE DATABASE keystone/glance; users @'localhost' and @'%' with "
                    "passwords ******** (SQL on stdin as root over the unix socket); "
                    "login proven with PyMySQL over the SSH port forward"),
    ])]


# Its known failures, in plain words (tui/tasks/explain.py aggregates every service's).
RULES = (
    Rule("db-denied", re.compile(r"Access denied for user|\(1045,", re.I), "error",
         "the database refused the login: wrong password or missing grant",
         "Retry (the mariadb.databases step re-applies users, passwords and grants); check the "
         "*_db_password secrets"),
    Rule("db-down",
         # MariaDB 11's client: "ERROR 2002 (HY000): Can't connect to local server through socket"
         re.compile(r"Can't connect to (local )?((MySQL|MariaDB) )?server|Lost connection to "
                    r"(MySQL|MariaDB)|\((2002|2003|2013),", re.I),
         "error",
         "MariaDB does not answer: it is not running, or listens on another address "
         "(bind-address in its drop-in)",
         "`systemctl status mariadb` on the host; the mariadb.service step starts it, then Retry",
         logs=("mariadb",)),
)


SERVICE = Service(
    "mariadb", "MariaDB", "database", phases,
    ports=(Port(PORT, frozenset({"mariadbd", "mysqld", "mariadb"}), "MariaDB"),),
    configs=lambda plat: (CONF(plat),),
    units=lambda plat: ("mariadb",),
    rules=RULES,
    packages=PACKAGES,
)
