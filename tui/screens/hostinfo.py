"""'Test connection': one batched command, parsed into facts people can read."""

from __future__ import annotations

from dataclasses import dataclass

from ..tasks.preflight import checks as limits
from ..tasks.preflight.compute import COMPUTE_MEM_GOOD, COMPUTE_MEM_MIN
from ..tasks.preflight.result import GiB
from .common import fmt_bytes

SEP = "@@STK@@"
PROBE = (
    "cat /etc/os-release 2>/dev/null; echo " + SEP + "; "
    "nproc 2>/dev/null; grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2; "
    "echo " + SEP + "; grep MemTotal /proc/meminfo 2>/dev/null; echo " + SEP + "; "
    "df -Pk /var 2>/dev/null | tail -1; echo " + SEP + "; id -u"
)


@dataclass
class HostFacts:
    os_name: str = "unknown system"
    platform_id: str | None = None
    platform_name: str = ""
    openstack: str = ""
    verified: bool = False
    support: str = ""
    maintained: bool = True
    cpus: int | None = None
    cpu_model: str = ""
    ram: int | None = None
    disk_free: int | None = None
    uid: str = ""
    sudo: str = ""

    @property
    def supported(self) -> bool:
        return self.platform_id is not None

    def rows(self, compute: bool = False) -> list[tuple[str, str, str]]:
        """(label, value, level) with level ok / warning / bad; ``compute``: the host runs
        Nova's guests too, so memory is judged as the compute preflight judges it."""
        out = []
        if self.platform_id is None:
            out.append(("System", f"{self.os_name}", "bad"))
        else:
            out.append(("System", self.os_name, "ok"))
        cpu = f"{self.cpus} CPU" + ("s" if (self.cpus or 0) != 1 else "") if self.cpus else "?"
        if self.cpu_model:
            cpu += f" ({self.cpu_model})"
        out.append(("CPU", cpu, "ok" if (self.cpus or 0) >= 2 else "warning"))
        # preflight's thresholds: the screen and the preflight never disagree
        low, good = ((COMPUTE_MEM_MIN, COMPUTE_MEM_GOOD) if compute
                     else (limits.MEM_MIN, limits.MEM_GOOD))
        ram_level = ("bad" if self.ram is None or self.ram < low
                     else "warning" if self.ram < good else "ok")
        ram = fmt_bytes(self.ram)
        if compute and ram_level != "ok" and self.ram is not None:
            ram += f" (with Nova: {low // GiB} GiB needed, {good // GiB} GiB advised)"
        out.append(("RAM", ram, ram_level))
        disk_level = ("bad" if self.disk_free is None or self.disk_free < limits.DISK_MIN
                      else "warning" if self.disk_free < limits.DISK_GOOD else "ok")
        out.append(("Free disk", f"{fmt_bytes(self.disk_free)} in /var", disk_level))
        if self.sudo:
            out.append(("Root", self.sudo, "ok"))
        if self.platform_id is None:
            out.append(("Supported", "no: Debian 13 or 12, Ubuntu 22.04/24.04 or EL9 needed", "bad"))
        elif self.verified:
            out.append(("Supported", f"yes, OpenStack {self.openstack} (verified)", "ok"))
        else:
            out.append(("Supported", f"yes, OpenStack {self.openstack} (not yet verified)",
                        "warning"))
        if self.support:
            out.append(("Support", self.support, "ok" if self.maintained else "warning"))
        return out


def parse(stdout: str) -> HostFacts:
    from ..tasks.platforms import describe, detect

    parts = stdout.split(SEP)
    parts += [""] * (5 - len(parts))
    os_text, cpu_text, mem_text, df_text, uid_text = (p.strip() for p in parts[:5])
    facts = HostFacts(os_name=describe(os_text))
    plat = detect(os_text)
    if plat is not None:
        facts.platform_id, facts.platform_name = plat.id, plat.name
        facts.openstack, facts.verified = plat.openstack, plat.verified
        facts.support, facts.maintained = plat.support, plat.maintained
    cpu_lines = cpu_text.splitlines()
    if cpu_lines and cpu_lines[0].strip().isdigit():
        facts.cpus = int(cpu_lines[0].strip())
    if len(cpu_lines) > 1:
        facts.cpu_model = " ".join(cpu_lines[1].split())[:40]
    for tok in mem_text.split():
        if tok.isdigit():
            facts.ram = int(tok) * 1024
            break
    cols = df_text.split()
    if len(cols) >= 4 and cols[3].isdigit():
        facts.disk_free = int(cols[3]) * 1024
    facts.uid = uid_text.splitlines()[-1].strip() if uid_text else ""
    return facts
