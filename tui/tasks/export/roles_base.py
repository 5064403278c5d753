"""The exported roles for the host and the base services: prepare (platform, host name,
packages), MariaDB, RabbitMQ, Memcached.  Each is (tasks, handlers, templates, vars) as
Python data, written as YAML by ``ansible.py``; every procedure mirrors the engine's step
of the same name in tui/tasks/services/."""

from __future__ import annotations

from ..services import mariadb, memcached, rabbitmq
from ..services.common import POLICY_RC, POLICY_RC_BODY
from . import source as src
from .source import MGMT, var

RMQ = "timeout -k 5 60 rabbitmqctl"
RMQ_ENV = {"LC_ALL": "C.UTF-8"}


def role(tasks, handlers=None, templates=None, vars=None, files=None) -> dict:
    return {"tasks": tasks, "handlers": handlers or [], "templates": templates or {},
            "vars": vars or {}, "files": files or {}}


def service_up(unit: str, port: int | None = None, host: str = MGMT) -> list[dict]:
    """Enabled and started; handlers that restart it run now; its port answers."""
    out = [{"name": f"Start and enable {unit}",
            "ansible.builtin.systemd_service": {"name": unit, "state": "started",
                                                "enabled": True}},
           {"name": f"Restart {unit} now if its configuration changed",
            "ansible.builtin.meta": "flush_handlers"}]
    if port:
        out.append({"name": f"{unit} answers on {port}",
                    "ansible.builtin.wait_for": {"host": host, "port": port, "timeout": 60}})
    return out


def restart(unit: str) -> dict:
    return {"name": f"restart {unit}",
            "ansible.builtin.systemd_service": {"name": unit, "state": "restarted"}}


def _secret_checks(profile) -> list[dict]:
    names = src.needed_secrets(profile)
    return [
        {"name": "Every secret this playbook needs is set (vault file or STACK_TUI_* variable)",
         "ansible.builtin.assert": {
             "that": ["(lookup('vars', 'stack_tui_' ~ item, default='') | string | length) > 0"],
             "fail_msg": "secret {{ item }} is empty: export STACK_TUI_{{ item | upper }} "
                         "(or export again with --vault-password-file)",
             "quiet": True},
         "loop": names, "run_once": True, "delegate_to": "localhost", "become": False},
        {"name": "Database passwords are printable ASCII without '@' (MariaDB's hash and "
                 "PyMySQL's Latin-1 must agree; '@' becomes '%40' in the database URL, which "
                 "the schema migrations' configparser refuses)",
         "ansible.builtin.assert": {
             "that": ["lookup('vars', 'stack_tui_' ~ item) is regex('^[ -?A-~]+$')"],
             "fail_msg": "secret {{ item }} holds '@' or a character outside printable ASCII; "
                         "choose a database password without them",
             "quiet": True},
         "loop": src.db_secrets(profile), "run_once": True, "delegate_to": "localhost",
         "become": False},
    ]


def installed_packages() -> list[dict]:
    """stack_tui_installed: package -> version, as dpkg-query says (what the engine reads;
    package_facts would need python3-apt, which a fresh host lacks)."""
    return [
        {"name": "Which packages are installed", "ansible.builtin.command":
            "dpkg-query -W -f='${Package}\\t${db:Status-Abbrev}\\t${Version}\\n'",
         "register": "stack_tui_dpkg", "changed_when": False},
        {"name": "Installed packages and their versions", "ansible.builtin.set_fact": {
            "stack_tui_installed": "{% set d = {} %}{% for f in stack_tui_dpkg.stdout_lines "
            "| map('split', '\\t') %}{% if f | length == 3 and f[1].startswith('ii') %}"
            "{% set _ = d.update({f[0]: f[2]}) %}{% endif %}{% endfor %}{{ d }}"}},
    ]


CONTROLLER_ONLY = "'controller' in group_names"


def prepare(profile, compute_view=None) -> dict:
    """prepare on the controller; with ``compute_view`` (a compute-only host's view) on every
    host at once: each its own packages, the Keystone unit's tasks on the controller only."""
    only = {"when": CONTROLLER_ONLY} if compute_view else {}
    tasks = [
        {"name": "The host runs Debian 13, the platform this playbook is written for",
         "ansible.builtin.assert": {
             "that": ["ansible_facts['distribution'] == 'Debian'",
                      "ansible_facts['distribution_major_version'] == '13'"],
             "fail_msg": "this playbook installs OpenStack 2025.1 from Debian 13; the host runs "
                         "{{ ansible_facts['distribution'] }} "
                         "{{ ansible_facts['distribution_version'] }} (use stack-tui apply "
                         "for the other platforms)"}},
        *_secret_checks(profile),
    ]
    if profile.openstack.fix_hosts:
        tasks += [
            {"name": "No 127.0.1.1 line for the host name (Debian's default)",
             "ansible.builtin.lineinfile": {"path": "/etc/hosts", "regexp": r"^127\.0\.1\.1\s",
                                            "state": "absent"}},
            {"name": "The host name resolves to the management address (RabbitMQ's epmd)",
             "ansible.builtin.lineinfile": {
                 "path": "/etc/hosts",
                 "regexp": "^{{ stack_tui_mgmt_address | regex_escape }}\\s",
                 "line": "{{ stack_tui_mgmt_address }} {{ ansible_facts['hostname'] }}"}},
        ]
    # a compute-only host (a view, see Profile.on) has no Keystone package
    ks = src.keystone_apache(profile)["distro_unit"] if "keystone" in \
        profile.openstack.services and profile.controller_here else None
    install = [
        {"name": "Answer debconf: the packages configure no database or endpoint themselves",
         "ansible.builtin.debconf": "{{ item }}", "loop": src.debconf()},
        {"name": "Let keystone's postinst enable its unit (it fails on a masked one)",
         "ansible.builtin.command": f"systemctl unmask {ks}.service", "changed_when": False,
         **only} if ks else None,
        {"name": "No service starts during the install (policy-rc.d)",
         "ansible.builtin.copy": {"dest": POLICY_RC, "content": POLICY_RC_BODY,
                                  "mode": "0755"}},
        {"name": "Install the packages (one transaction, no recommends)",
         "ansible.builtin.apt": {"name": "{{ stack_tui_packages }}",
                                 "install_recommends": False, "update_cache": True,
                                 "cache_valid_time": 21600}},
    ]
    tasks += [
        *installed_packages(),
        {"name": "Install what is missing", "when": "stack_tui_packages | difference("
         "stack_tui_installed.keys() | list) | length > 0",
         "block": [t for t in install if t] + installed_packages(),
         "always": [{"name": "Service starts allowed again",
                     "ansible.builtin.file": {"path": POLICY_RC, "state": "absent"}}]},
    ]
    if ks:
        tasks += [
            {"name": f"The packaged uWSGI {ks} unit stays off (Apache serves Keystone on 5000)",
             "ansible.builtin.systemd_service": {"name": ks, "enabled": False}, **only},
            {"name": f"Mask {ks}", "ansible.builtin.systemd_service": {"name": ks,
                                                                     "masked": True}, **only},
        ]
    return _with_packages(profile, compute_view, tasks)


def _with_packages(profile, compute_view, tasks: list[dict]) -> dict:
    """prepare's role: its tasks, stack-tui's marker directory last, the package list; on
    every host (``compute_view``) each host picks its own list first."""
    tasks = [*tasks, {"name": "stack-tui's marker directory", "ansible.builtin.file": {
        "path": "/var/lib/stack-tui", "state": "directory", "mode": "0755"}}]
    if compute_view is None:
        return role(tasks, vars={"stack_tui_packages": src.packages(profile)})
    pick = {"name": "This host's packages (the controller's, or a compute host's own)",
            "ansible.builtin.set_fact": {"stack_tui_packages": (
                "{{ stack_tui_host_packages['controller' if 'controller' in group_names "
                "else 'compute'] }}")}}
    return role([pick, *tasks], vars={"stack_tui_host_packages": {
        "controller": src.packages(profile), "compute": src.packages(compute_view)}})


def mariadb_role(profile) -> dict:
    conf = mariadb.CONF(src.PLATFORM)
    sock = {"login_unix_socket": "/run/mysqld/mysqld.sock", "login_user": "root"}
    dbs = databases(profile)
    tasks = [
        {"name": "OpenStack settings for MariaDB",
         "ansible.builtin.template": {"src": "99-openstack.cnf.j2", "dest": conf,
                                      "mode": "0644"},
         "notify": "restart mariadb"},
        *service_up("mariadb", mariadb.PORT),
        {"name": "The services' databases",
         "community.mysql.mysql_db": {"name": "{{ item }}", "state": "present", **sock},
         "loop": [db for d in dbs for db in d["dbs"]]},
        {"name": "The services' database users, @localhost and @%, with their grants",
         "community.mysql.mysql_user": {
             "name": "{{ item.0.name }}", "host": "{{ item.1 }}",
             "password": "{{ lookup('vars', 'stack_tui_' ~ item.0.secret) }}",
             "priv": "{{ item.0.priv }}",
             "state": "present", **sock},
         "loop": "{{ stack_tui_databases | product(['localhost', '%']) | list }}",
         "no_log": True},
    ]
    return role(tasks, handlers=[restart("mariadb")],
                templates={"99-openstack.cnf.j2": src.mariadb_conf(profile)},
                vars={"stack_tui_databases": dbs})


def databases(profile) -> list[dict]:
    """Each service's user, its password's secret and its databases: Nova's user has
    nova_api and nova_cell0 too (the engine's nova.databases step; granted here with the
    rest, so no later task takes a grant back)."""
    from ..services import nova

    out = []
    for n, s in profile.databases():
        dbs = list(nova.DATABASES) if n == "nova" else [n]
        out.append({"name": n, "secret": s, "dbs": dbs,
                    "priv": "/".join(f"{d}.*:ALL" for d in dbs)})
    return out


def rabbitmq_role(profile) -> dict:
    pw = "{{ %s }}" % var("rabbit_password")
    tasks = [
        *service_up("rabbitmq-server", rabbitmq.AMQP, "127.0.0.1"),
        {"name": "RabbitMQ's users", "ansible.builtin.command": f"{RMQ} -q -s list_users",
         "environment": RMQ_ENV, "register": "stack_tui_rmq_users", "changed_when": False},
        # RabbitMQ 4 reads the password from stdin only without -q.
        {"name": "Does user openstack log in with its password (password on stdin)",
         "ansible.builtin.command": {"cmd": f"{RMQ} authenticate_user openstack",
                                     "stdin": pw},
         "environment": RMQ_ENV, "register": "stack_tui_rmq_auth", "changed_when": False,
         "failed_when": False, "no_log": True},
        {"name": "Add user openstack (password on stdin, never in argv)",
         "ansible.builtin.command": {"cmd": f"{RMQ} add_user openstack", "stdin": pw},
         "environment": RMQ_ENV, "no_log": True,
         "when": "'openstack' not in (stack_tui_rmq_users.stdout_lines | map('split') "
                 "| map('first') | list)"},
        {"name": "Set the password of user openstack (on stdin)",
         "ansible.builtin.command": {"cmd": f"{RMQ} change_password openstack", "stdin": pw},
         "environment": RMQ_ENV, "no_log": True,
         "when": "'openstack' in (stack_tui_rmq_users.stdout_lines | map('split') "
                 "| map('first') | list) and stack_tui_rmq_auth.rc != 0"},
        {"name": "User openstack may configure, write and read everything on /",
         "community.rabbitmq.rabbitmq_user": {
             "user": "openstack", "permissions": [{"vhost": "/", "configure_priv": ".*",
                                                   "write_priv": ".*", "read_priv": ".*"}],
             "state": "present"}},
        {"name": "No default guest user",
         "community.rabbitmq.rabbitmq_user": {"user": "guest", "state": "absent"}},
    ]
    return role(tasks)


def memcached_role(profile) -> dict:
    lay = memcached.layout(src.PLATFORM)
    tasks = [  # one -l line, the management address (Debian's file has two)
        {"name": "Memcached listens on no other address",
         "ansible.builtin.lineinfile": {
             "path": lay.conf, "state": "absent",
             "regexp": "^-l (?!{{ stack_tui_mgmt_address | regex_escape }}$)"},
         "notify": "restart memcached"},
        {"name": "Memcached listens on the management address",
         "ansible.builtin.lineinfile": {"path": lay.conf, "regexp": "^-l ",
                                        "line": f"-l {MGMT}"},
         "notify": "restart memcached"},
        *service_up("memcached", memcached.PORT),
    ]
    return role(tasks, handlers=[restart("memcached")])
