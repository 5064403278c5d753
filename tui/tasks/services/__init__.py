"""The services stack-tui installs, one module each, in install order.

A module gives ``phases(profile, plat) -> list[Phase]``: its steps (check / run /
verify) with the plan text beside them.  ``REGISTRY`` is the order; ``build_plan``
in ``tui/tasks/deploy.py`` composes the plan from it.  ``prepare`` (host and
packages) and ``finish`` (credential files, verification) frame them.
"""

from __future__ import annotations

from . import (finish, glance, horizon, keystone, mariadb, memcached, neutron, nova, placement,
               prepare, rabbitmq)
from .base import Port, Secret, Service


REGISTRY: tuple[Service, ...] = tuple(
    m.SERVICE for m in (mariadb, rabbitmq, memcached, keystone, glance, placement, neutron,
                       nova, horizon))


def by_id(service_id: str) -> Service:
    return next(s for s in REGISTRY if s.id == service_id)


__all__ = ["REGISTRY", "Port", "Secret", "Service", "by_id", "finish", "prepare"]
