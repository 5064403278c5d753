"""The services stack-tui installs, one module each, in install order.

A module gives ``phases(profile, plat) -> list[Phase]``: its steps (check / run /
verify) with the plan text beside them.  ``REGISTRY`` is the order; ``build_plan``
in ``tui/tasks/deploy.py`` composes the plan from it.  ``prepare`` (host and
packages) and ``finish`` (credential files, verification) frame them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import finish, glance, keystone, mariadb, memcached, prepare, rabbitmq


@dataclass(frozen=True)
class Service:
    id: str                      # the name in [openstack] services and in Platform.packages
    title: str
    phases: Callable             # (profile, plat) -> list[Phase]


REGISTRY: tuple[Service, ...] = (
    Service("mariadb", "MariaDB", mariadb.phases),
    Service("rabbitmq", "RabbitMQ", rabbitmq.phases),
    Service("memcached", "Memcached", memcached.phases),
    Service("keystone", "Keystone (identity)", keystone.phases),
    Service("glance", "Glance (images)", glance.phases),
)

__all__ = ["REGISTRY", "Service", "finish", "prepare"]
