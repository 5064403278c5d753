"""Horizon's steps on a scripted fake host: local_settings.py (Keystone on the endpoint host,
memcached sessions, ALLOWED_HOSTS, the default domain, routers only with self-service
networks), offline static files, its own mod_wsgi daemon next to Keystone; a re-run writes
nothing and restarts nothing; checks only read; other platforms are refused in the plan."""

from __future__ import annotations

import ast
import re
import shlex

import pytest

from tests.fakehost import FakeHost, run_plan
from tui.tasks.engine import Phase, Plan, Status
from tui.tasks.platforms import PLATFORMS
from tui.tasks.profile import Profile
from tui.tasks.services import by_id, horizon

STEPS = ("horizon.settings", "horizon.static", "horizon.apache", "horizon.verify")
LOGIN_FORM = '<form><input name="username"><input name="password" type="password"></form>'


def _profile(*extra: str, endpoint: str = "") -> Profile:
    p = Profile(name="t")
    p.host.address = "10.0.0.5"
    if endpoint:
        p.openstack.endpoint_host = endpoint
    p.openstack.services = ["mariadb", "memcached", "keystone", "glance", *extra, "horizon"]
    return p


def _host() -> FakeHost:
    host = FakeHost().systemd("apache2", active=True, enabled=True)
    host.on(r"^install -d -m 755 /etc/openstack-dashboard/local_settings.d$", (0, ""))
    host.on(r"^\[ -e \S+\.stack-tui\.orig \] \|\| cp -p ", (0, ""))
    host.on(r"^nproc; awk", (0, "2\n4000000\n"))

    def manifest(h, m, stdin):
        return (0 if horizon.MANIFEST in h.files else 1), ""

    def build(h, m, stdin):
        h.builds = getattr(h, "builds", 0) + 1
        h.files[horizon.MANIFEST] = b"{}"
        return 0, ""

    host.on(rf"^test -s {horizon.MANIFEST}$", manifest)
    host.on(r"^cd /usr/share/openstack-dashboard && python3 \S+manage.py collectstatic "
            r"--noinput --clear -v0 && python3 -c "
            + re.escape(shlex.quote(horizon.compress_script())) + " && chown ", build)
    host.on(r"^a2enmod -q wsgi >/dev/null; a2ensite -q openstack-dashboard-alias-only$", (0, ""))
    host.on(r"^test -e /etc/apache2/sites-enabled/openstack-dashboard-alias-only.conf$",
            lambda h, m, s: (0 if horizon.SITE in h.files else 1, ""))
    ssl_site = "/etc/apache2/sites-enabled/default-ssl.conf"
    host.put(ssl_site, "<VirtualHost _default_:443>\n  SSLEngine on\n</VirtualHost>\n")
    host.on(r"^\[ -e /etc/apache2/sites-enabled/default-ssl.conf \] && "
            r"! \[ -e /etc/apache2/mods-enabled/ssl.load \]$",
            lambda h, m, s: (0 if ssl_site in h.files else 1, ""))
    host.on(r"^a2dissite -q default-ssl$", lambda h, m, s: (h.files.pop(ssl_site), (0, ""))[1])
    # Apache refuses SSLEngine without mod_ssl (what the package leaves behind)
    host.on(r"^apache2ctl configtest 2>&1$",
            lambda h, m, s: (1, "AH00526: Invalid command 'SSLEngine'\n") if ssl_site in h.files
            else (0, "Syntax OK\n"))
    served = lambda h, m, s: (0, "200") if horizon.SITE in h.files else (0, "000")  # noqa: E731
    host.on(r"^curl -s -o /dev/null -w '%\{http_code\}' --max-time 10 "
            r"http://127.0.0.1/horizon/auth/login/$", served)
    host.on(r"^for i in \$\(seq 60\); do c=\$\(curl ", (0, "200\n"))
    host.on(r"^curl -s --max-time 20 -w ",
            lambda h, m, s: (0, LOGIN_FORM + "\n200 0.41") if horizon.SITE in h.files
            else (0, "\n000 0.00"))
    return host


def _run(host: FakeHost, tmp_path, profile: Profile | None = None,
         platform: str = "debian-13") -> dict[str, Status]:
    profile = profile or _profile()
    ctx = host.ctx(profile, platform=platform, secrets={}, state_path=tmp_path / "state.json")
    steps = [s for ph in horizon.phases(profile, PLATFORMS[platform]) for s in ph.steps]
    plan = Plan([Phase("horizon", "Horizon", steps)], platform=platform)
    return run_plan(plan, ctx)


def _settings(host: FakeHost) -> dict:
    """local_settings.py's top-level assignments (it must be valid Python)."""
    tree = ast.parse(host.read_file(horizon.SETTINGS))
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                out[node.targets[0].id] = ast.unparse(node.value)
    return out


def test_first_run_configures_builds_and_serves_second_run_changes_nothing(tmp_path):
    host = _host()
    # the Apache step waited for the login page: verify's check (a read) finds it rendered
    assert _run(host, tmp_path) == {**{s: Status.DONE for s in STEPS[:3]},
                                    "horizon.verify": Status.ALREADY_DONE}
    s = _settings(host)
    assert s["OPENSTACK_KEYSTONE_URL"] == "http://10.0.0.5:5000/v3"
    assert s["OPENSTACK_KEYSTONE_DEFAULT_DOMAIN"] == "Default"
    assert s["ALLOWED_HOSTS"] == ["10.0.0.5", "localhost", "127.0.0.1"]
    assert s["SESSION_ENGINE"] == "django.contrib.sessions.backends.cache"
    assert s["CACHES"]["default"]["LOCATION"] == "10.0.0.5:11211"
    assert s["CACHES"]["default"]["BACKEND"].endswith("PyMemcacheCache")
    assert s["WEBROOT"] == "/horizon/" and s["COMPRESS_OFFLINE"] is True
    assert s["OPENSTACK_NEUTRON_NETWORK"]["enable_router"] is False  # no Neutron here
    assert "generate_or_read_from_file" in s["SECRET_KEY"]  # Horizon's own key, on the host
    assert host.modes[horizon.SETTINGS] == (0o640, "root", "www-data")
    # Debian's later snippets (LocMem cache, webroot "/") are overridden by ours, run last
    snippet = host.read_file(horizon.SNIPPET)
    assert "PyMemcacheCache" in snippet and "WEBROOT = '/horizon/'" in snippet
    assert horizon.SNIPPET.rsplit("/", 1)[1] > "_0006_debian_cache.py"
    site = host.read_file(horizon.SITE)
    assert "process-group=horizon" in site and "WSGIScriptAlias /horizon " in site
    assert "Alias /horizon/static /var/lib/openstack-dashboard/static\n" in site
    assert "Alias /static /var/lib/openstack-dashboard/static\n" in site  # the icon fonts
    assert "Listen" not in site and "VirtualHost" not in site  # Keystone's :5000 untouched
    assert host.builds == 1
    assert host.units["apache2"].restarts == 1  # loads the new dashboard
    assert "/etc/apache2/sites-enabled/default-ssl.conf" not in host.files

    mark = host.mark()
    assert _run(host, tmp_path) == {s: Status.ALREADY_DONE for s in STEPS}
    commands, writes = host.since(mark)
    assert writes == []
    assert host.builds == 1 and host.units["apache2"].restarts == 1
    assert not any(c.startswith(("systemctl enable", "systemctl restart", "a2en", "install"))
                   for c in commands), commands


def test_changed_settings_rebuild_static_files_and_reload_the_dashboard(tmp_path):
    host = _host()
    _run(host, tmp_path)
    result = _run(host, tmp_path, _profile(endpoint="cloud.example.org"))
    assert result["horizon.settings"] == Status.DONE
    assert result["horizon.static"] == Status.DONE and host.builds == 2
    assert result["horizon.apache"] == Status.DONE and host.units["apache2"].restarts == 2
    s = _settings(host)
    assert s["OPENSTACK_KEYSTONE_URL"] == "http://cloud.example.org:5000/v3"
    assert s["ALLOWED_HOSTS"][0] == "cloud.example.org" and "10.0.0.5" in s["ALLOWED_HOSTS"]


def test_routers_panel_follows_self_service_networks(tmp_path):
    host = _host()
    _run(host, tmp_path, _profile("rabbitmq", "placement", "neutron", "nova"),
         platform="debian-12")
    net = _settings(host)["OPENSTACK_NEUTRON_NETWORK"]
    assert net["enable_router"] is True and net["enable_fip_topology_check"] is True
    # Debian 13 (Open vSwitch) has them too; without Neutron there are none
    assert horizon.self_service(_profile("neutron"), PLATFORMS["debian-13"])
    assert not horizon.self_service(_profile(), PLATFORMS["debian-13"])


def test_checks_only_read_on_a_fresh_host(tmp_path):
    host = _host()
    ctx = host.ctx(_profile(), platform="debian-13", secrets={}, state_path=tmp_path / "s.json")
    mark = host.mark()
    for step in (s for ph in horizon.phases(_profile(), PLATFORMS["debian-13"])
                 for s in ph.steps):
        assert step.check(ctx) is False, step.id
    commands, writes = host.since(mark)
    assert writes == []
    assert not any("manage.py" in c or c.startswith(("systemctl", "a2en", "install"))
                   for c in commands if not c.startswith("systemctl is-")), commands


@pytest.mark.parametrize("pid", ["ubuntu-24.04", "el9"])
def test_other_platforms_are_refused_with_a_reason(pid, tmp_path):
    phases = horizon.phases(_profile(), PLATFORMS[pid])
    steps = [s for ph in phases for s in ph.steps]
    assert [s.id for s in steps] == ["horizon.platform"]
    host = FakeHost()
    ctx = host.ctx(_profile(), platform=pid, secrets={}, state_path=tmp_path / "s.json")
    with pytest.raises(Exception) as err:
        steps[0].run(ctx)
    assert "Horizon cannot be installed" in err.value.what and "Debian" in err.value.hint
    assert host.commands == []


def test_opt_in_needs_keystone_and_says_where_it_is():
    svc = by_id("horizon")
    assert not svc.default and "horizon" not in Profile(name="x").openstack.services
    assert "keystone" in svc.requires
    assert horizon.dashboard_url(_profile(endpoint="cloud.example.org")) == \
        "http://cloud.example.org/horizon/"


def test_apply_and_summary_give_the_url_and_the_demo_login_never_a_password():
    from rich.console import Console

    from tui.screens.summary import endpoints_table

    def shown(prof) -> str:
        console = Console(width=160, record=True)
        console.print(endpoints_table(prof))
        return console.export_text()

    prof = _profile(endpoint="cloud.example.org")
    line = horizon.dashboard_line(prof)
    assert line.startswith("Dashboard: http://cloud.example.org/horizon/ - log in as demo")
    assert str(prof.secrets_file) in line and "password is in" in line
    text = shown(prof)
    assert "Dashboard" in text and "http://cloud.example.org/horizon/" in text
    assert "log in as demo" in text
    prof.openstack.demo = False
    assert "log in as admin" in horizon.dashboard_line(prof)
    prof.openstack.services.remove("horizon")
    assert horizon.dashboard_line(prof) == "" and "Dashboard" not in shown(prof)


def test_keystone_apache_drops_the_ssl_site_the_dashboard_package_enabled(tmp_path):
    """The packages come in before Keystone's Apache step: Horizon's package leaves the
    default-ssl site enabled without mod_ssl, and Keystone's configtest must not fail on it."""
    from tui.tasks.services import keystone

    host = _host()
    host.on(r"^install -d -m 755 /usr/share/stack-tui$", (0, ""))
    host.on(r"^a2enmod -q wsgi >/dev/null; a2ensite -q keystone; a2enconf -q servername$",
            (0, ""))
    host.on(r"^bad=0; for i in", (0, "200\n"))
    prof = _profile()
    ctx = host.ctx(prof, platform="debian-13", secrets={}, state_path=tmp_path / "s.json")
    step = next(s for ph in keystone.phases(prof, PLATFORMS["debian-13"]) for s in ph.steps
                if s.id == "keystone.apache")
    step.run(ctx)   # raised "Apache rejects its configuration" before
    assert "/etc/apache2/sites-enabled/default-ssl.conf" not in host.files
    assert host.units["apache2"].restarts == 1
