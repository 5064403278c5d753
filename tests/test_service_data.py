"""A service's per-platform facts live in its own module: a new service is one module in
tui/tasks/services/ and its line in REGISTRY, never an edit of platforms.py.

The throwaway "widget" service below is declared here, in the test, and the plan and the
package transaction pick it up with nothing else changed."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from tui.tasks import deploy, platforms, services
from tui.tasks.engine import Phase, Step
from tui.tasks.platforms import PLATFORMS, Platform
from tui.tasks.profile import Profile
from tui.tasks.services import REGISTRY, PerPlatform, Service, packages_for

SERVICE_WORDS = {s.id for s in REGISTRY} | {"keystone", "glance", "placement", "nova",
                                            "neutron", "horizon", "mariadb", "rabbitmq",
                                            "memcached"}


# -- the lookup ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Layout:
    unit: str
    conf: str = "/etc/widget/widget.conf"


_LAYOUT = PerPlatform(
    deb=_Layout("widget-api"), rpm=_Layout("openstack-widget-api"),
    overrides={"ubuntu": {"conf": "/etc/widget/ubuntu.conf"},
               "ubuntu-24.04": {"unit": "widget-noble"},
               "debian-12": {"unit": "widget-zed"}})


@pytest.mark.parametrize("pid,unit,conf", [
    ("debian-13", "widget-api", "/etc/widget/widget.conf"),          # the family's default
    ("debian-12", "widget-zed", "/etc/widget/widget.conf"),          # a platform id's override
    ("ubuntu-22.04", "widget-api", "/etc/widget/ubuntu.conf"),       # the distribution's
    ("ubuntu-24.04", "widget-noble", "/etc/widget/ubuntu.conf"),     # both, the id's last
    ("el9", "openstack-widget-api", "/etc/widget/widget.conf"),      # the other family
])
def test_family_default_then_distribution_then_platform_id(pid, unit, conf):
    assert _LAYOUT(PLATFORMS[pid]) == _Layout(unit, conf)


def test_a_plain_value_override_replaces_it():
    pkgs = PerPlatform(deb=("a", "b"), rpm=("c",), overrides={"debian-12": ("z",)})
    assert pkgs(PLATFORMS["debian-12"]) == ("z",)
    assert pkgs(PLATFORMS["debian-13"]) == ("a", "b")
    assert pkgs(PLATFORMS["el9"]) == ("c",)


def test_every_override_names_a_known_platform_or_distribution():
    known = set(PLATFORMS) | {pid.split("-")[0] for pid in PLATFORMS}
    found = 0
    for name, mod in sys.modules.items():
        if not name.startswith("tui.tasks.services."):
            continue
        for attr, value in vars(mod).items():
            if isinstance(value, PerPlatform):
                found += 1
                assert set(value.overrides) <= known, f"{name}.{attr}: unknown platform key"
    assert found >= len(REGISTRY)   # every service declares at least its packages


# -- Platform holds only what is about the OS -----------------------------------------------------

def test_platform_names_no_service():
    names = {f.name for f in dataclasses.fields(Platform)} | {
        n for n in vars(Platform) if not n.startswith("_")}
    leaks = sorted(n for n in names for word in SERVICE_WORDS if word in n)
    assert leaks == [], f"service data on Platform: {leaks}"


# -- a new service: one module and its registry line ------------------------------------------------

WIDGET_PACKAGES = PerPlatform(deb=("widget-api", "python3-widgetclient"),
                              rpm=("openstack-widget",),
                              overrides={"ubuntu": ("widget-api", "widget-ubuntu-extras")})


def _widget_phases(profile, plat) -> list[Phase]:
    lay = _LAYOUT(plat)
    return [Phase("widget", "Widget", [
        Step("widget.service", f"Start {lay.unit}", run=lambda c: None, check=None,
             detail=f"systemctl enable --now {lay.unit}; config {lay.conf}"),
    ])]


WIDGET = Service("widget", "Widget", "testing", _widget_phases, requires=("keystone",),
                 default=False, packages=WIDGET_PACKAGES,
                 units=lambda plat: (_LAYOUT(plat).unit,))


@pytest.fixture
def widget_registered(monkeypatch):
    """The registry line, as tui/tasks/services/__init__.py would have it."""
    registry = REGISTRY + (WIDGET,)
    monkeypatch.setattr(services, "REGISTRY", registry)
    monkeypatch.setattr(deploy, "REGISTRY", registry)
    return registry


def _profile(svc: list[str]) -> Profile:
    p = Profile(name="widget")
    p.host.address = "192.0.2.10"
    p.openstack.services = svc
    p.image.url = "https://example.org/cirros.img"
    return p


@pytest.mark.parametrize("pid,pkgs,unit", [
    ("debian-13", ["widget-api", "python3-widgetclient"], "widget-api"),
    ("ubuntu-24.04", ["widget-api", "widget-ubuntu-extras"], "widget-noble"),
    ("el9", ["openstack-widget"], "openstack-widget-api"),
])
def test_a_new_service_module_reaches_packages_and_plan(widget_registered, pid, pkgs, unit):
    plat_before = dataclasses.asdict(PLATFORMS[pid])
    plat = platforms.by_id(pid)
    base = packages_for(plat, ["mariadb", "memcached", "keystone"])
    assert packages_for(plat, ["mariadb", "memcached", "keystone", "widget"]) == base + pkgs
    plan = deploy.build_plan(_profile(["mariadb", "memcached", "keystone", "widget"]), pid)
    ids = [s.id for s in plan.steps()]
    assert "widget.service" in ids and ids.index("widget.service") > ids.index("keystone.apache")
    step = plan.find("widget.service")
    assert step.title == f"Start {unit}"
    assert plat.install_cmd(base + pkgs) in plan.find("prepare.packages").detail
    assert dataclasses.asdict(PLATFORMS[pid]) == plat_before   # the platform was not touched


def test_unselected_new_service_adds_nothing(widget_registered):
    plat = PLATFORMS["debian-13"]
    svc = ["mariadb", "memcached", "keystone"]
    assert "widget-api" not in packages_for(plat, svc)
    assert "widget-api" in services.all_packages(plat)
    assert "widget.service" not in [s.id for s in deploy.build_plan(_profile(svc)).steps()]


# -- the moved facts kept their values (the golden plans show the rest) -------------------------------

@pytest.mark.parametrize("pid,disk_format,server_units,keystone_unit,memcached_style", [
    ("debian-13", True, ("neutron-api", "neutron-rpc-server"), "keystone", "debian"),
    ("debian-12", False, ("neutron-api", "neutron-rpc-server"), "keystone", "debian"),
    ("ubuntu-22.04", False, ("neutron-server",), None, "debian"),
    ("ubuntu-24.04", True, ("neutron-server",), None, "debian"),
    ("el9", True, ("neutron-server",), None, "sysconfig"),
])
def test_service_layouts_per_platform(pid, disk_format, server_units, keystone_unit,
                                      memcached_style):
    from tui.tasks.services import glance, keystone, memcached, neutron

    plat = PLATFORMS[pid]
    assert glance.layout(plat).checks_disk_format is disk_format
    assert neutron.layout(plat).server_units == server_units
    assert keystone.layout(plat).distro_service == keystone_unit
    assert memcached.layout(plat).style == memcached_style
