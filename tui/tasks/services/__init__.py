"""The services stack-tui installs, one module each, in install order.

A module gives ``phases(profile, plat) -> list[Phase]``: its steps (check / run /
verify) with the plan text beside them.  ``REGISTRY`` is the order; ``build_plan``
in ``tui/tasks/deploy.py`` composes the plan from it.  ``prepare`` (host and
packages) and ``finish`` (credential files, verification) frame them.

Adding a service is one module here (its steps, its ``Service`` with its packages and any
per-platform layout, see ``base.PerPlatform``) and its line in ``REGISTRY``; platforms.py
holds only what is about the operating system.
"""

from __future__ import annotations

from . import (finish, glance, horizon, keystone, mariadb, memcached, neutron, nova, placement,
               prepare, rabbitmq)
from .base import PerPlatform, Port, Secret, Service, SummaryLine


REGISTRY: tuple[Service, ...] = tuple(
    m.SERVICE for m in (mariadb, rabbitmq, memcached, keystone, glance, placement, neutron,
                       nova, horizon))


def by_id(service_id: str) -> Service:
    return next(s for s in REGISTRY if s.id == service_id)


def packages_for(plat, services) -> list[str]:
    """The base packages, then each selected service's, in registry order (one transaction)."""
    chosen = set(services)
    pkgs = list(prepare.BASE_PACKAGES(plat))
    for s in REGISTRY:
        if s.id in chosen:
            pkgs += s.packages(plat)
    return pkgs


def host_packages(profile, plat) -> list[str]:
    """The packages of ``profile.host`` (a view's own host, see Profile.on), one transaction:
    the controller every selected service's, nova-compute and with it libvirt and QEMU only
    when it computes too; a compute-only host nova-compute's and the Neutron agent's alone
    (no database, queue or API server, whose packages would enable them at its next boot)."""
    from . import compute_node

    if not profile.controller_here:
        return list(prepare.HOST_PACKAGES(plat)) + list(compute_node.PACKAGES(plat))
    svc = set(profile.openstack.services)
    pkgs = packages_for(plat, svc)
    if "nova" in svc:
        drop = set(nova.PACKAGES(plat)) - set(nova.packages(profile, plat))
        pkgs = [p for p in pkgs if p not in drop]
    return pkgs


def summary_lines(profile, facts) -> list[SummaryLine]:
    """What the end of a run tells the user, each selected service's in registry order (its
    ``summary`` hook), without control characters (facts hold names the cloud gave)."""
    from dataclasses import replace

    from ..redact import strip_controls

    def clean(text: str) -> str:  # one line each
        return strip_controls(text).replace("\n", " ").replace("\t", " ")

    chosen = set(profile.openstack.services)
    return [replace(line, label=clean(line.label), text=clean(line.text), cli=clean(line.cli))
            for s in REGISTRY if s.id in chosen for line in s.summary(profile, facts or {})]


def all_packages(plat) -> list[str]:
    """Every package stack-tui may install on the platform (every service selected)."""
    return packages_for(plat, [s.id for s in REGISTRY])


__all__ = ["REGISTRY", "PerPlatform", "Port", "Secret", "Service", "SummaryLine",
           "all_packages", "by_id", "finish", "host_packages", "packages_for", "prepare", "summary_lines"]
