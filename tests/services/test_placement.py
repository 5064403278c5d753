"""Placement's host-side steps on a scripted fake host: placement.conf and the Apache vhost
act once, then their checks say done and a re-run writes nothing; the packaged uWSGI unit
is masked; the password never reaches a command line; checks never write."""

from __future__ import annotations

from tests.fakehost import FakeHost, run_plan
from tui.tasks.engine import Plan, Status
from tui.tasks.platforms import PLATFORMS
from tui.tasks.profile import Profile
from tui.tasks.services import placement

PASSWORD = "pl4cement $(rm -rf /) 'q\""
DB_PASSWORD = "db-Secret-9"
SECRETS = {"placement_password": PASSWORD, "placement_db_password": DB_PASSWORD,
           "admin_password": "x"}
HOST_STEPS = ("placement.config", "placement.apache")


def _profile() -> Profile:
    p = Profile(name="t")
    p.host.address = "10.0.0.5"
    p.openstack.services = ["mariadb", "memcached", "keystone", "placement"]
    return p


def _host() -> FakeHost:
    host = FakeHost().systemd("apache2", active=True, enabled=True)
    masked: set[str] = set()

    def is_enabled(h, m, stdin):
        return (0, "masked\n") if m.group(1) in masked else (1, "disabled\n")

    def mask(h, m, stdin):
        masked.add(m.group(1))
        return 0, ""

    host.on(r"^systemctl is-enabled '?([\w-]+)'? 2>/dev/null$", is_enabled)
    host.on(r"systemctl mask -q '?([\w-]+)'?$", mask)
    host.on(r"^\[ -e \S+\.stack-tui\.orig \] \|\| cp -p ", (0, ""))
    host.on(r"^nproc; awk", (0, "2\n4000000\n"))
    host.on(r"^install -d -m 755 /usr/share/stack-tui$", (0, ""))
    host.on(r"^a2enmod -q wsgi >/dev/null; a2ensite -q placement$", (0, ""))
    host.on(r"^test -e /etc/apache2/sites-enabled/placement.conf$",
            lambda h, m, s: (0 if "/etc/apache2/sites-available/placement.conf" in h.files
                             else 1, ""))
    host.on(r"^apache2ctl configtest 2>&1$", (0, "Syntax OK\n"))
    host.on(r"curl -s -o /dev/null -w '%\{http_code\}' --max-time 10 http://127.0.0.1:8778/$",
            (0, "200"))
    host.on(r"^bad=0; for i in", (0, "200\n"))
    host.put(placement.PLACEMENT_CONF, "[DEFAULT]\n\n[placement_database]\n\n[keystone_authtoken]\n"
                                       "auth_url = http://localhost:5000\n")
    return host


def _run(host: FakeHost, tmp_path) -> dict[str, Status]:
    plat = PLATFORMS["debian-13"]
    ctx = host.ctx(_profile(), platform="debian-13", secrets=SECRETS,
                   state_path=tmp_path / "state.json")
    steps = [s for ph in placement.phases(_profile(), plat) for s in ph.steps if s.id in HOST_STEPS]
    from tui.tasks.engine import Phase

    plan = Plan([Phase("placement", "Placement", steps)], platform="debian-13")
    return run_plan(plan, ctx)


def test_first_run_configures_and_serves_second_run_changes_nothing(tmp_path):
    host = _host()
    assert _run(host, tmp_path) == {s: Status.DONE for s in HOST_STEPS}
    conf = host.read_file(placement.PLACEMENT_CONF)
    assert "connection = mysql+pymysql://placement:db-Secret-9@10.0.0.5/placement" in conf
    assert "auth_strategy = keystone" in conf
    assert "username = placement" in conf and "auth_url = http://10.0.0.5:5000" in conf
    assert host.modes[placement.PLACEMENT_CONF] == (0o640, "root", "placement")
    vhost = host.read_file("/etc/apache2/sites-available/placement.conf")
    assert "Listen 8778" in vhost and "threads=1" in vhost and "user=placement" in vhost
    assert host.read_file(placement.WSGI).endswith(
        "from placement.wsgi.api import application  # noqa: F401\n")
    assert any("systemctl mask -q placement-api" in c for c in host.commands)
    assert not any(PASSWORD in c or DB_PASSWORD in c for c in host.commands)

    mark = host.mark()
    assert _run(host, tmp_path) == {s: Status.ALREADY_DONE for s in HOST_STEPS}
    commands, writes = host.since(mark)
    assert writes == []
    assert not any(c.startswith(("systemctl enable", "systemctl restart", "a2en")) for c in commands)


def test_checks_only_read_on_a_fresh_host(tmp_path):
    host = _host()
    plat = PLATFORMS["debian-13"]
    ctx = host.ctx(_profile(), platform="debian-13", secrets=SECRETS,
                   state_path=tmp_path / "s.json")
    mark = host.mark()
    for step in (s for ph in placement.phases(_profile(), plat) for s in ph.steps
                 if s.id in HOST_STEPS):
        assert step.check(ctx) is False
    commands, writes = host.since(mark)
    assert writes == []
    assert not any(c.startswith(("systemctl mask", "systemctl enable", "a2en", "install"))
                   for c in commands), commands


def test_zed_gets_the_factory_entry_and_not_a_selected_service_by_default():
    assert placement.wsgi_body(PLATFORMS["debian-12"]).endswith(
        "from placement.wsgi import init_application\n\napplication = init_application()\n")
    assert "placement" not in Profile(name="x").openstack.services
