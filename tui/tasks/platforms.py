"""What differs between distributions: repos, packages, services, paths."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Platform:
    id: str
    name: str
    openstack: str               # OpenStack release the platform gets
    family: str                  # "deb" | "rpm"
    verified: bool               # proven end to end on a real host
    repo_setup: tuple[str, ...]  # commands enabling the OpenStack repository
    repo_check: str              # command that succeeds when the repo is enabled
    packages: dict = field(default_factory=dict)  # component -> packages
    mariadb_conf: str = "/etc/mysql/mariadb.conf.d/99-openstack.cnf"
    memcached_conf: str = "/etc/memcached.conf"
    memcached_style: str = "debian"   # "debian" (-l line) | "sysconfig" (OPTIONS=)
    web_service: str = "apache2"
    keystone_vhost: str = "/etc/apache2/sites-available/keystone.conf"
    keystone_vhost_enable: str = "a2ensite -q keystone"
    servername_conf: str = "/etc/apache2/conf-available/servername.conf"
    servername_enable: str = "a2enconf -q servername"
    apache_log_dir: str = "/var/log/apache2"
    glance_service: str = "glance-api"
    distro_keystone_service: str | None = "keystone"   # packaged uWSGI keystone to keep off
    # Keystone's WSGI application: the module entry (keystone.wsgi.api, Keystone >= 26)
    # or the older factory; the keystone-wsgi-public script goes away upstream in 2025.2.
    keystone_wsgi_module: str = "keystone.server.wsgi:initialize_public_application"
    # Support status, said by preflight, plan and the Host screen; an unmaintained
    # OpenStack release gets a warning (never a block).
    support: str = ""
    maintained: bool = True

    def packages_for(self, services) -> list[str]:
        """The base packages, then each selected service's, in the table's (registry) order."""
        chosen = set(services)
        return [p for comp, pkgs in self.packages.items() if comp == "base" or comp in chosen
                for p in pkgs]

    @property
    def all_packages(self) -> list[str]:
        return [p for pkgs in self.packages.values() for p in pkgs]

    def install_cmd(self, pkgs: list[str]) -> str:
        import shlex

        names = " ".join(shlex.quote(p) for p in pkgs)
        if self.family == "deb":
            return ("DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                    "--no-install-recommends -o Dpkg::Options::=--force-confold "
                    "-o Dpkg::Options::=--force-unsafe-io " + names)
        return "dnf install -y -q " + names

    def installed_check_cmd(self, pkgs: list[str]) -> str:
        import shlex

        names = " ".join(shlex.quote(p) for p in pkgs)
        if self.family == "deb":
            return f"dpkg-query -W -f='${{Package}} ${{db:Status-Status}}\\n' {names} 2>&1"
        return f"rpm -q {names} 2>&1"


_DEB_PKGS = {
    "base": ["python3-openstackclient"],
    "mariadb": ["mariadb-server", "python3-pymysql"],
    "rabbitmq": ["rabbitmq-server"],
    "memcached": ["memcached", "python3-memcache"],
    "keystone": ["keystone", "apache2", "libapache2-mod-wsgi-py3"],
    "glance": ["glance-api"],
}

DEBIAN_13 = Platform(
    id="debian-13", name="Debian 13 (trixie)", openstack="2025.1 (Epoxy)", family="deb",
    verified=True, repo_setup=(), repo_check="true", packages=_DEB_PKGS,
    keystone_wsgi_module="keystone.wsgi.api:application",
    support="Debian stable; OpenStack 2025.1 Epoxy is maintained upstream",
)

DEBIAN_12 = Platform(
    id="debian-12", name="Debian 12 (bookworm)", openstack="zed", family="deb", verified=True,
    repo_setup=(), repo_check="true", packages=_DEB_PKGS,
    support="Debian oldstable; its OpenStack (Zed) is past upstream maintenance "
            "(unmaintained since 2024): prefer Debian 13",
    maintained=False,
)


def _ubuntu(version: str, codename: str, release: str) -> Platform:
    return Platform(
        id=f"ubuntu-{version}", name=f"Ubuntu {version} ({codename}) + Cloud Archive {release}",
        openstack=release, family="deb", verified=False,
        repo_setup=(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
            "software-properties-common",
            f"add-apt-repository -y cloud-archive:{release}",
        ),
        repo_check=f"grep -rqs 'cloud-archive.*{codename}-updates/{release}' "
                   "/etc/apt/sources.list.d/",
        packages={**_DEB_PKGS, "glance": ["glance-api"]},
        distro_keystone_service=None,  # Ubuntu's keystone runs under apache2 already
        maintained=release != "zed",  # the Zed cloud archive is past upstream maintenance
    )


EL9 = Platform(
    id="el9", name="Rocky/Alma/CentOS Stream 9 + RDO 2024.1 (Caracal)", openstack="2024.1",
    family="rpm", verified=False,
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
    },
    mariadb_conf="/etc/my.cnf.d/openstack.cnf",
    memcached_conf="/etc/sysconfig/memcached",
    memcached_style="sysconfig",
    web_service="httpd",
    keystone_vhost="/etc/httpd/conf.d/wsgi-keystone.conf",
    keystone_vhost_enable="true",
    servername_conf="/etc/httpd/conf.d/servername.conf",
    servername_enable="true",
    apache_log_dir="/var/log/httpd",
    glance_service="openstack-glance-api",
    distro_keystone_service=None,
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
