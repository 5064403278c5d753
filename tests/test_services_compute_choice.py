"""The Services screen with the compute services: Placement, Neutron, Nova and Horizon are
offered with what they need, and ticking Nova turns on what it needs and says so."""

from __future__ import annotations

from tui.screens.services import LABEL_WIDTH, label, toggle
from tui.tasks import profile as pr


def test_the_compute_services_are_offered_with_their_needs():
    for svc, needs in {"placement": "needs MariaDB, Memcached and Keystone",
                       "neutron": "needs MariaDB, RabbitMQ, Memcached and Keystone",
                       "nova": "Glance, Placement and Neutron",
                       "horizon": "needs Memcached and Keystone"}.items():
        assert svc in pr.SERVICES and svc not in pr.DEFAULT_SERVICES
        assert needs in label(svc).plain, label(svc).plain
        assert len(label(svc).plain) <= LABEL_WIDTH  # whole on an 80-column terminal


def test_nova_names_the_services_that_bring_the_rest():
    assert label("nova").plain == ("Nova (compute)  needs Glance, Placement and Neutron (and "
                                   "their needs)")
    assert label("glance").plain == "Glance (images)  needs MariaDB, Memcached and Keystone"


def test_ticking_nova_turns_on_what_it_needs_and_says_so():
    sel, msg = toggle(set(pr.DEFAULT_SERVICES), "nova", True)
    assert sel == set(pr.DEFAULT_SERVICES) | {"nova", "placement", "neutron"}
    assert msg == "Nova needs Placement and Neutron: turned on too."
    sel, msg = toggle(set(), "nova", True)
    assert sel == {"nova", "placement", "neutron", "glance", "keystone", "mariadb",
                   "memcached", "rabbitmq"}
    assert msg.startswith("Nova needs ") and msg.endswith(": turned on too.")


def test_turning_off_neutron_takes_nova_with_it():
    sel, msg = toggle(set(pr.SERVICES), "neutron", False)
    assert "nova" not in sel and "neutron" not in sel and "placement" in sel
    assert msg == "Nova turned off too: it needs Neutron."
