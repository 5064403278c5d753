"""What differs between distributions: repos, packages, services, paths.

Behaviour that differs by family is a strategy held by the platform: ``pm`` (the package
manager, tui/tasks/pkgmgr.py) and ``web`` (the web server serving Keystone), so callers
ask the platform instead of branching on ``family``.  ``resolve`` is the one way from a
profile and /etc/os-release text to a Platform; an unknown system is an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Failure
from .pkgmgr import APT, DNF, PackageManager

# What `stack-tui plan` shows when no host has been asked yet ([openstack] platform = auto):
# said so in the plan text ("assumed; detected from /etc/os-release at run time").
PLAN_ASSUMED = "debian-13"


class UnknownPlatform(Failure, ValueError):
    """The host's system (or a platform id) is not one stack-tui knows."""

    def __init__(self, what: str, why: str, hint: str):
        super().__init__(what, why, hint)

    def _message(self) -> str:
        return f"{self.what} {self.why}; {self.hint}"


SUPPORTED = "Debian 13 and 12, Ubuntu 22.04/24.04 and Rocky/Alma/CentOS Stream 9"


@dataclass(frozen=True)
class WebServer:
    """The Apache that serves Keystone, as the distribution packages it."""
    unit: str                    # systemd unit
    ctl: str                     # apache2ctl | apachectl
    log_dir: str
    a2en: bool                   # sites/confs/modules are enabled with a2en* (symlinks)

    @property
    def configtest(self) -> str:
        return f"{self.ctl} configtest"

    def enable_module(self, name: str) -> str:
        return f"a2enmod -q {name} >/dev/null" if self.a2en else "true"

    def enabled_test(self, available: str) -> str:
        """Shell test that the site/conf at ``available`` is enabled (always true without a2en)."""
        if not self.a2en:
            return "true"
        return "test -e " + available.replace("-available/", "-enabled/")

    def module_enabled_test(self, name: str) -> str:
        return f"test -e /etc/apache2/mods-enabled/{name}.load" if self.a2en else "true"


APACHE_DEBIAN = WebServer(unit="apache2", ctl="apache2ctl", log_dir="/var/log/apache2", a2en=True)
HTTPD_EL = WebServer(unit="httpd", ctl="apachectl", log_dir="/var/log/httpd", a2en=False)


@dataclass(frozen=True)
class Platform:
    id: str
    name: str
    openstack: str               # OpenStack release the platform gets
    verified: bool               # proven end to end on a real host
    repo_setup: tuple[str, ...]  # commands enabling the OpenStack repository
    repo_check: str              # command that succeeds when the repo is enabled
    packages: dict = field(default_factory=dict)  # component -> packages
    mariadb_conf: str = "/etc/mysql/mariadb.conf.d/99-openstack.cnf"
    memcached_conf: str = "/etc/memcached.conf"
    memcached_style: str = "debian"   # "debian" (-l line) | "sysconfig" (OPTIONS=)
    pm: PackageManager = APT
    web: WebServer = APACHE_DEBIAN
    keystone_vhost: str = "/etc/apache2/sites-available/keystone.conf"
    keystone_vhost_enable: str = "a2ensite -q keystone"
    servername_conf: str = "/etc/apache2/conf-available/servername.conf"
    servername_enable: str = "a2enconf -q servername"
    glance_service: str = "glance-api"
    distro_keystone_service: str | None = "keystone"   # packaged uWSGI keystone to keep off
    # Keystone's WSGI application: the module entry (keystone.wsgi.api, Keystone >= 26)
    # or the older factory; the keystone-wsgi-public script goes away upstream in 2025.2.
    keystone_wsgi_module: str = "keystone.server.wsgi:initialize_public_application"
    # Placement under the same Apache: its vhost, how it is enabled, the packaged uWSGI unit
    # to keep off, and its WSGI entry (placement.wsgi.api from 2025.1 on; a factory before).
    placement_vhost: str = "/etc/apache2/sites-available/placement.conf"
    placement_vhost_enable: str = "a2ensite -q placement"
    placement_distro_service: str | None = "placement-api"
    placement_wsgi_module: str = "placement.wsgi:init_application"
    # Messaging for services with a transport_url (Nova, Neutron): RabbitMQ 4 has no classic
    # mirroring; oslo.messaging 16 (2025.1) needs the quorum options turned on.
    quorum_queue_options: tuple[str, ...] = ()
    # Neutron: the ML2 mechanism (linuxbridge: no openvswitch module on our kernels; OVN
    # later), whether it must be enabled as experimental, and the units of the API server.
    neutron_mechanism: str = "linuxbridge"
    linuxbridge_experimental: bool = False
    neutron_server_units: tuple[str, ...] = ("neutron-server",)
    # Support status, said by preflight, plan and the Host screen; an unmaintained
    # OpenStack release gets a warning (never a block).
    support: str = ""
    maintained: bool = True
    # Glance checks an upload against its disk_format (Glance 30, Epoxy); Zed's accepts anything.
    glance_checks_disk_format: bool = True

    @property
    def family(self) -> str:
        """"deb" | "rpm" (the package format); behaviour belongs on ``pm``, not on this."""
        return self.pm.family

    @property
    def web_service(self) -> str:
        return self.web.unit

    @property
    def apache_log_dir(self) -> str:
        return self.web.log_dir

    def packages_for(self, services) -> list[str]:
        """The base packages, then each selected service's, in the table's (registry) order."""
        chosen = set(services)
        return [p for comp, pkgs in self.packages.items() if comp == "base" or comp in chosen
                for p in pkgs]

    @property
    def all_packages(self) -> list[str]:
        return [p for pkgs in self.packages.values() for p in pkgs]

    def install_cmd(self, pkgs: list[str]) -> str:
        return self.pm.install_cmd(pkgs)

    def installed_check_cmd(self, pkgs: list[str]) -> str:
        return self.pm.installed_check_cmd(pkgs)


_DEB_PKGS = {
    "base": ["python3-openstackclient"],
    "mariadb": ["mariadb-server", "python3-pymysql"],
    "rabbitmq": ["rabbitmq-server"],
    "memcached": ["memcached", "python3-memcache"],
    "keystone": ["keystone", "apache2", "libapache2-mod-wsgi-py3"],
    "glance": ["glance-api"],
    "placement": ["placement-api"],
    "neutron": ["neutron-server", "neutron-linuxbridge-agent", "neutron-dhcp-agent",
                "neutron-l3-agent", "neutron-metadata-agent",
                "iputils-ping"],  # the verification pings a floating IP from the host
    # nova-compute-kvm pulls qemu-system-x86 only (nova-compute-qemu pulls every architecture);
    # the virt_type (kvm or qemu) is set in nova-compute.conf either way.
    "nova": ["nova-api", "nova-conductor", "nova-scheduler", "nova-consoleproxy",
             "nova-compute", "nova-compute-kvm"],
    "horizon": ["openstack-dashboard-apache", "python3-pymemcache"],
}

DEBIAN_13 = Platform(
    id="debian-13", name="Debian 13 (trixie)", openstack="2025.1 (Epoxy)",
    verified=True, repo_setup=(), repo_check="true", packages=_DEB_PKGS,
    keystone_wsgi_module="keystone.wsgi.api:application",
    placement_wsgi_module="placement.wsgi.api:application",
    quorum_queue_options=("rabbit_quorum_queue", "rabbit_transient_quorum_queue",
                          "use_queue_manager"),
    # Neutron 26 (2025.1) removed the Linux bridge driver and agent (Debian's
    # neutron-linuxbridge-agent is an empty leftover: no /usr/bin/neutron-linuxbridge-agent),
    # and these kernels have no openvswitch module: no mechanism yet (OVN/OVS netdev later).
    neutron_mechanism="",
    neutron_server_units=("neutron-api", "neutron-rpc-server"),
    support="Debian stable; OpenStack 2025.1 Epoxy is maintained upstream",
)

DEBIAN_12 = Platform(
    id="debian-12", name="Debian 12 (bookworm)", openstack="zed", verified=True,
    repo_setup=(), repo_check="true", packages=_DEB_PKGS, glance_checks_disk_format=False,
    # Neutron 21 (Zed) already calls linuxbridge experimental: the server refuses the
    # mechanism ("has to be explicitly enabled in 'cfg.CONF.experimental'") unless enabled.
    linuxbridge_experimental=True,
    neutron_server_units=("neutron-api", "neutron-rpc-server"),
    support="Debian oldstable; its OpenStack (Zed) is past upstream maintenance "
            "(unmaintained since 2024): prefer Debian 13",
    maintained=False,
)


def _ubuntu(version: str, codename: str, release: str) -> Platform:
    return Platform(
        id=f"ubuntu-{version}", name=f"Ubuntu {version} ({codename}) + Cloud Archive {release}",
        openstack=release, verified=False,
        repo_setup=(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
            "software-properties-common",
            f"add-apt-repository -y cloud-archive:{release}",
        ),
        repo_check=f"grep -rqs 'cloud-archive.*{codename}-updates/{release}' "
                   "/etc/apt/sources.list.d/",
        packages={**_DEB_PKGS, "glance": ["glance-api"],
                  "horizon": ["openstack-dashboard", "python3-pymemcache"]},  # plan refuses
        distro_keystone_service=None,  # Ubuntu's keystone runs under apache2 already
        placement_vhost="/etc/apache2/sites-available/placement-api.conf",  # replaces its own
        placement_vhost_enable="a2ensite -q placement-api",
        placement_distro_service=None,
        maintained=release != "zed",  # the Zed cloud archive is past upstream maintenance
        glance_checks_disk_format=release != "zed",
    )


EL9 = Platform(
    id="el9", name="Rocky/Alma/CentOS Stream 9 + RDO 2024.1 (Caracal)", openstack="2024.1",
    pm=DNF, verified=False,
    repo_setup=(
        "dnf install -y -q centos-release-openstack-caracal",
        "dnf config-manager --set-enabled crb",
    ),
    repo_check="rpm -q centos-release-openstack-caracal",
    packages={
        "base": ["python3-openstackclient", "openstack-selinux"],
        "mariadb": ["mariadb", "mariadb-server", "python3-PyMySQL"],
        "rabbitmq": ["rabbitmq-server"],
        "memcached": ["memcached", "python3-memcached"],
        "keystone": ["openstack-keystone", "httpd", "python3-mod_wsgi"],
        "glance": ["openstack-glance"],
        "placement": ["openstack-placement-api"],
        # not verified: RDO's names for the same pieces
        "neutron": ["openstack-neutron", "openstack-neutron-ml2",
                    "openstack-neutron-linuxbridge"],
        "nova": ["openstack-nova-api", "openstack-nova-conductor", "openstack-nova-scheduler",
                 "openstack-nova-novncproxy", "openstack-nova-compute"],
        "horizon": ["openstack-dashboard", "python3-pymemcache"],  # its plan refuses (not Debian)
    },
    mariadb_conf="/etc/my.cnf.d/openstack.cnf",
    memcached_conf="/etc/sysconfig/memcached",
    memcached_style="sysconfig",
    web=HTTPD_EL,
    keystone_vhost="/etc/httpd/conf.d/wsgi-keystone.conf",
    keystone_vhost_enable="true",
    servername_conf="/etc/httpd/conf.d/servername.conf",
    servername_enable="true",
    glance_service="openstack-glance-api",
    distro_keystone_service=None,
    placement_vhost="/etc/httpd/conf.d/00-placement-api.conf",  # replaces the package's own
    placement_vhost_enable="true",
    placement_distro_service=None,
)

PLATFORMS = {
    p.id: p
    for p in (
        DEBIAN_13,
        DEBIAN_12,
        _ubuntu("22.04", "jammy", "zed"),
        _ubuntu("24.04", "noble", "caracal"),
        EL9,
    )
}


def detect(os_release: str) -> Platform | None:
    """Pick the platform from /etc/os-release text."""
    info = {}
    for line in os_release.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            info[k.strip()] = v.strip().strip('"')
    ident = info.get("ID", "")
    like = info.get("ID_LIKE", "")
    version = info.get("VERSION_ID", "")
    if ident == "debian" and version.split(".")[0] in ("12", "13"):
        return PLATFORMS[f"debian-{version.split('.')[0]}"]
    if ident == "ubuntu" and version in ("22.04", "24.04"):
        return PLATFORMS[f"ubuntu-{version}"]
    if (ident in ("rocky", "almalinux", "centos", "rhel") or "rhel" in like) and version.split(".")[0] == "9":
        return PLATFORMS["el9"]
    return None


def describe(os_release: str) -> str:
    for line in os_release.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "unknown system"


def by_id(platform_id: str) -> Platform:
    """The platform with this id; an unknown id is an error naming it and the known ones."""
    try:
        return PLATFORMS[platform_id]
    except KeyError:
        raise UnknownPlatform(f"Unknown platform {platform_id!r}.",
                              f"stack-tui knows {', '.join(PLATFORMS)}",
                              "fix [openstack] platform in the profile (or use auto)") from None


def resolve(forced: str, os_release: str | None) -> Platform:
    """THE platform of a host: the profile's forced one, else detected from /etc/os-release.

    Raises UnknownPlatform naming the system when it is not supported (no silent default)."""
    if forced and forced != "auto":
        return by_id(forced)
    plat = detect(os_release or "")
    if plat is None:
        raise UnknownPlatform(f"Unsupported system: {describe(os_release or '')}.",
                              f"stack-tui supports {SUPPORTED}",
                              "use a supported release, or force one with [openstack] platform "
                              "in the profile (at your own risk)")
    return plat
