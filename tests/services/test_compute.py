"""Nova's and Neutron's file steps on a scripted fake host (written once, then already done, no
password on a command line), the virt_type decision, quorum queues per platform, and the
explained stop for Neutron on Debian 13, whose Neutron has no Linux bridge agent any more."""

from __future__ import annotations

import pytest

from tests.fakehost import FakeHost
from tui.tasks.engine import Engine, Phase, Plan, Status, StepError
from tui.tasks.platforms import PLATFORMS
from tui.tasks.profile import Profile
from tui.tasks.services import neutron, nova

SECRETS = {"nova_password": "n0va'$(x)\"", "nova_db_password": "novadb-1",
           "neutron_password": "neu'tr\"on", "neutron_db_password": "neudb-2",
           "placement_password": "pl-3", "rabbit_password": "ra@b/b:it",
           "metadata_secret": "meta-S3cret", "admin_password": "x", "demo_password": "y"}


def _profile() -> Profile:
    p = Profile(name="t")
    p.host.address = "10.0.0.5"
    p.openstack.services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance",
                            "placement", "neutron", "nova"]
    return p


def _host() -> FakeHost:
    host = FakeHost()
    host.on(r"^\[ -e \S+\.stack-tui\.orig \] \|\| cp -p ", (0, ""))
    return host


def _run(host, tmp_path, plat_id, steps) -> dict[str, Status]:
    plat = PLATFORMS[plat_id]
    ctx = host.ctx(_profile(), platform=plat_id, secrets=SECRETS,
                   state_path=tmp_path / "state.json")
    chosen = [s for m in (neutron, nova) for ph in m.phases(_profile(), plat)
              for s in ph.steps if s.id in steps]
    seen: dict[str, Status] = {}

    def listen(ev):
        if type(ev).__name__ == "StepFinished":
            seen[ev.step_id] = ev.status

    Engine(Plan([Phase("x", "x", chosen)], platform=plat_id), ctx, listeners=[listen]).run()
    return seen


def test_config_files_are_written_once_with_quorum_queues_on_debian_12_without(tmp_path):
    host = _host()
    steps = ("neutron.config", "nova.config")
    assert _run(host, tmp_path, "debian-12", steps) == {s: Status.DONE for s in steps}
    conf = host.read_file(nova.NOVA_CONF)
    assert "transport_url = rabbit://openstack:ra%40b%2Fb%3Ait@10.0.0.5:5672/" in conf
    assert "connection = mysql+pymysql://nova:novadb-1@10.0.0.5/nova_api?charset=utf8mb4" in conf
    assert "metadata_proxy_shared_secret = meta-S3cret" in conf
    assert "rabbit_quorum_queue" not in conf                      # Zed: RabbitMQ 3, classic
    lb = host.read_file(neutron.LB_CONF)
    assert "physical_interface_mappings = provider:stk-ext-p" in lb
    assert "local_ip = 10.0.0.5" in lb
    assert "mechanism_drivers = linuxbridge,l2population" in host.read_file(neutron.ML2_CONF)
    nconf = host.read_file(neutron.NEUTRON_CONF)
    assert "[experimental]\nlinuxbridge = true" in nconf and "interface_driver = linuxbridge" in nconf
    assert not any(v in c for c in host.commands for v in SECRETS.values())

    mark = host.mark()
    assert _run(host, tmp_path, "debian-12", steps) == {s: Status.ALREADY_DONE for s in steps}
    assert host.since(mark)[1] == []


def test_debian_13_gets_quorum_queues_and_neutron_stops_with_the_reason(tmp_path):
    host = _host()
    assert _run(host, tmp_path, "debian-13", ("nova.config",)) == {"nova.config": Status.DONE}
    conf = host.read_file(nova.NOVA_CONF)
    for key in ("rabbit_quorum_queue", "rabbit_transient_quorum_queue", "use_queue_manager"):
        assert f"{key} = true" in conf
    steps = [s for ph in neutron.phases(_profile(), PLATFORMS["debian-13"]) for s in ph.steps]
    assert [s.id for s in steps] == ["neutron.mechanism"]
    with pytest.raises(StepError) as err:
        steps[0].run(host.ctx(_profile(), secrets=SECRETS, state_path=tmp_path / "s.json"))
    assert "Linux bridge" in err.value.why and "Debian 12" in err.value.hint


@pytest.mark.parametrize("answer,expected", [("kvm\n", "kvm"), ("", "qemu")])
def test_virt_type_is_kvm_only_with_a_usable_device(tmp_path, answer, expected):
    host = _host().on(r"^test -c /dev/kvm", (0 if answer else 1, answer))
    ctx = host.ctx(_profile(), secrets=SECRETS, state_path=tmp_path / "s.json")
    assert nova.virt_type(ctx) == expected


def test_compute_services_are_opt_in_and_nova_brings_the_boot_check():
    assert not {"placement", "neutron", "nova"} & set(Profile(name="x").openstack.services)
    ids = [ph.id for ph in nova.phases(_profile(), PLATFORMS["debian-12"])]
    assert ids == ["nova", "cloud"]


def test_uwsgi_process_counts_are_cut_once_and_duplicates_removed(tmp_path):
    host = _host()
    host.put("/etc/nova/nova-api-metadata-uwsgi.ini",
             "[uwsgi]\nprocesses = 4\nmaster = true\nprocesses = 8\nthreads = 32\n")
    host.put("/etc/nova/nova-api-uwsgi.ini", "[uwsgi]\nprocesses = 16\nthreads = 1\n")
    assert _run(host, tmp_path, "debian-12", ("nova.config",)) == {"nova.config": Status.DONE}
    meta = host.read_file("/etc/nova/nova-api-metadata-uwsgi.ini")
    assert [ln for ln in meta.splitlines() if ln.startswith("processes")] == ["processes = 1"]
    assert "threads = 32" in meta and "master = true" in meta
    assert "processes = 2\n" in host.read_file("/etc/nova/nova-api-uwsgi.ini")
    assert "[conductor]\nworkers = 2" in host.read_file(nova.NOVA_CONF)
    mark = host.mark()
    assert _run(host, tmp_path, "debian-12", ("nova.config",)) == {
        "nova.config": Status.ALREADY_DONE}
    assert host.since(mark)[1] == []
