"""Package managers as strategies (apt/dpkg, dnf/rpm): the commands and parsers that differ.

A ``Platform`` holds one (``plat.pm``); callers ask it instead of branching on the
distribution family.  Pure: builds command strings and parses their output, runs nothing.
"""

from __future__ import annotations

import re
import shlex
import urllib.parse
from dataclasses import dataclass
from typing import Callable

q = shlex.quote


def _release_url(uri: str, suite: str) -> str:
    if suite.endswith("/"):
        return f"{uri.rstrip('/')}/{suite.lstrip('./')}InRelease"
    return f"{uri.rstrip('/')}/dists/{suite}/InRelease"


def _one_line_sources(text: str) -> list[str]:
    urls = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts or parts[0] != "deb":
            continue
        parts = parts[1:]
        if parts and parts[0].startswith("["):
            while parts and not parts[0].endswith("]"):
                parts.pop(0)
            parts = parts[1:]
        if len(parts) >= 2:
            urls.append(_release_url(parts[0], parts[1]))
    return urls


def _deb822_fields(para: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for ln in para.splitlines():
        if ln.startswith("#"):
            continue
        if ln[:1] in (" ", "\t") and key:
            fields[key] += " " + ln.strip()
        elif ":" in ln:
            key, val = ln.split(":", 1)
            key = key.strip().lower()
            fields[key] = val.strip()
    return fields


def _deb822_sources(text: str) -> list[str]:
    urls = []
    for para in re.split(r"\n\s*\n", text):
        fields = _deb822_fields(para)
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").strip().lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                urls.append(_release_url(uri, suite))
    return urls


def repo_urls(one_line: str, deb822: str = "") -> list[str]:
    """One index URL per repository host from APT sources (both formats), http(s) only."""
    seen, out = set(), []
    for u in _one_line_sources(one_line) + _deb822_sources(deb822):
        p = urllib.parse.urlsplit(u)
        if p.scheme not in ("http", "https") or (p.scheme, p.netloc) in seen:
            continue
        seen.add((p.scheme, p.netloc))
        out.append(u)
    return out


def yum_urls(text: str) -> list[str]:
    """One URL per repository host from yum.repos.d baseurl/mirrorlist/metalink lines."""
    out, seen = [], set()
    for line in text.splitlines():
        val = line.split("=", 1)[1].strip().split()[0] if "=" in line and line.split("=", 1)[1].strip() else ""
        p = urllib.parse.urlsplit(val)
        if p.scheme in ("http", "https") and p.netloc and p.netloc not in seen:
            seen.add(p.netloc)
            out.append(f"{p.scheme}://{p.netloc}/")
    return out


def _dpkg_installed(pkgs: list[str], output: str) -> set[str]:
    return {ln.split()[0] for ln in output.splitlines() if ln.strip().endswith(" installed")}


def _rpm_installed(pkgs: list[str], output: str) -> set[str]:
    return {p for p in pkgs if any(ln.startswith(p + "-") for ln in output.splitlines())}


def _pgrep_holders(pm_section: str) -> str:
    return ", ".join(f"{ln.split()[1]} (pid {ln.split()[0]})"
                     for ln in pm_section.splitlines() if len(ln.split()) > 1)


@dataclass(frozen=True)
class PackageManager:
    family: str                          # "deb" | "rpm": the package format
    install_prefix: str                  # + quoted package names
    query_prefix: str                    # + quoted names: one line per package and its state
    version_format: str                  # + quoted name: prints the installed version
    list_all: str                        # every installed package, one a line (support bundle)
    sources_hint: str                    # where the repositories are configured
    installed: Callable[[list[str], str], set[str]]      # (wanted, query output) -> installed
    sources: Callable[[dict[str, str]], list[str]]       # preflight fact sections -> repo URLs
    probe_prefix: str                    # + URL + dest: fetch one index with a short timeout
    lock_waits: bool                     # dpkg's lock: wait for its holder (apt), else report
    holders: Callable[[dict[str, str]], str] = lambda sections: sections.get("lock", "").strip()
    blocks_service_starts: bool = False  # policy-rc.d keeps packaged services from starting

    def install_cmd(self, pkgs: list[str]) -> str:
        return self.install_prefix + " " + " ".join(q(p) for p in pkgs)

    def installed_check_cmd(self, pkgs: list[str]) -> str:
        return self.query_prefix + " " + " ".join(q(p) for p in pkgs) + " 2>&1"

    def version_cmd(self, pkg: str) -> str:
        return f"{self.version_format} {q(pkg)}"

    def probe_cmd(self, url: str, dest: str) -> str:
        return self.probe_prefix.format(url=q(url), dest=dest)


APT = PackageManager(
    family="deb",
    install_prefix=("DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                    "--no-install-recommends -o Dpkg::Options::=--force-confold "
                    "-o Dpkg::Options::=--force-unsafe-io"),
    query_prefix="dpkg-query -W -f='${Package} ${db:Status-Status}\\n'",
    version_format="dpkg-query -W -f='${Version}'",
    list_all="dpkg -l 2>&1",
    sources_hint="check /etc/apt/sources.list",
    installed=_dpkg_installed,
    sources=lambda s: repo_urls(s.get("sources", ""), s.get("sources822", "")),
    probe_prefix=("timeout 8 /usr/lib/apt/apt-helper -o APT::Sandbox::User=root "
                  "-o Acquire::Retries=0 -o Acquire::http::Timeout=5 -o Acquire::https::Timeout=5 "
                  "download-file {url} {dest}"),
    lock_waits=True,
    blocks_service_starts=True,
)

DNF = PackageManager(
    family="rpm",
    install_prefix="dnf install -y -q",
    query_prefix="rpm -q",
    version_format="rpm -q --qf '%{VERSION}-%{RELEASE}'",
    list_all="rpm -qa 2>&1",
    sources_hint="check /etc/yum.repos.d/",
    installed=_rpm_installed,
    sources=lambda s: yum_urls(s.get("yum", "")),
    probe_prefix="timeout 8 curl -sS -o /dev/null --max-time 6 {url}",
    lock_waits=False,
    holders=lambda s: _pgrep_holders(s.get("pm", "").strip()),
)
