#!/usr/bin/env python3
"""Benchmark: stack-tui against a straight shell script of the manual procedure.

    sudo .venv/bin/python bench/bench.py                 # Debian 13, then Debian 12
    sudo .venv/bin/python bench/bench.py --release 13    # one release
    sudo .venv/bin/python bench/bench.py --compute       # the all-in-one compute cloud

Two identical fresh sandbox hosts (same cached base rootfs, same warm apt archive
cache).  On one, `stack-tui apply` (the real CLI); on the other, bench/manual.sh over
plain ssh.  Then: the re-run time, `stack-tui --help`, TUI first paint, the per-command
overhead on one SSH connection, and memory used on the host after the install.
With --compute both also install Placement, Neutron and Nova (bench/manual-compute.sh
follows manual.sh on the script's host), upload the tiny test guest as the image and end
with the same test boot (a server ACTIVE, its console booted, its floating IP answering
ping, then deleted).
Public tools only: ssh, time, /proc; the hosts come from `stack-tui sandbox`.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORDS = {
    "ADMIN_PASS": "benchAdmin1", "DEMO_PASS": "benchDemo1", "KEYSTONE_DBPASS": "benchKsDb1",
    "GLANCE_DBPASS": "benchGlDb1", "GLANCE_PASS": "benchGlance1", "RABBIT_PASS": "benchRabbit1",
}
COMPUTE_PASSWORDS = {
    "PLACEMENT_DBPASS": "benchPlDb1", "PLACEMENT_PASS": "benchPlacement1",
    "NEUTRON_DBPASS": "benchNeDb1", "NEUTRON_PASS": "benchNeutron1", "NOVA_DBPASS": "benchNoDb1",
    "NOVA_PASS": "benchNova1", "METADATA_SECRET": "benchMetadata1",
}
# the profile's secret name for each script variable
SECRET_NAMES = {
    "ADMIN_PASS": "admin_password", "DEMO_PASS": "demo_password",
    "KEYSTONE_DBPASS": "keystone_db_password", "GLANCE_DBPASS": "glance_db_password",
    "GLANCE_PASS": "glance_password", "RABBIT_PASS": "rabbit_password",
    "PLACEMENT_DBPASS": "placement_db_password", "PLACEMENT_PASS": "placement_password",
    "NEUTRON_DBPASS": "neutron_db_password", "NEUTRON_PASS": "neutron_password",
    "NOVA_DBPASS": "nova_db_password", "NOVA_PASS": "nova_password",
    "METADATA_SECRET": "metadata_secret",
}
COMPUTE_SERVICES = ("placement", "neutron", "nova")
PHASES = ("prepare", "mariadb", "rabbitmq", "memcached", "keystone", "glance", "image")
COMPUTE_PHASES = ("placement", "neutron", "nova", "cloud", "boot")


def ssh(info, command: str, stdin: str | None = None, timeout: float = 1800):
    return subprocess.run(
        ["ssh", "-q", "-i", info.key_file, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", f"root@{info.address}", command],
        input=stdin, capture_output=True, text=True, timeout=timeout)


def cli(*args, timeout=1800):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    return r, time.monotonic() - t0


def host_memory_mib(info) -> float:
    """Sum of PSS of every process on the host (what the install costs in RAM)."""
    r = ssh(info, "cat /proc/[0-9]*/smaps_rollup 2>/dev/null | awk '/^Pss:/ {s+=$2} END {print s}'")
    return int(r.stdout.strip() or 0) / 1024


def host_memory_top(info, n: int = 8) -> list[tuple[str, float, int]]:
    """The biggest holders of PSS on the host: (command name, MiB, processes)."""
    r = ssh(info, "for d in /proc/[0-9]*; do c=$(cat $d/comm 2>/dev/null) || continue; "
                  "awk -v c=\"$c\" '/^Pss:/ {print c \"\\t\" $2}' $d/smaps_rollup 2>/dev/null; "
                  "done")
    by: dict[str, list[int]] = {}
    for line in r.stdout.splitlines():
        name, _, kib = line.rpartition("\t")
        if kib.isdigit():
            by.setdefault(name, []).append(int(kib))
    top = sorted(by.items(), key=lambda kv: -sum(kv[1]))[:n]
    return [(name, sum(v) / 1024, len(v)) for name, v in top]


def phase_times_stack_tui(state_file: Path) -> dict[str, float]:
    import json

    data = json.loads(state_file.read_text())
    out: dict[str, float] = {}
    for step, entry in data["steps"].items():
        # the test boot is a phase of its own in the script
        key = "boot" if step == "cloud.boot" else step.split(".")[0]
        out[key] = out.get(key, 0.0) + entry.get("duration", 0.0)
    return out


def phase_times_script(stdout: str) -> dict[str, float]:
    marks = [(ln.split()[1], float(ln.split()[2])) for ln in stdout.splitlines() if ln.startswith("@@ ")]
    return {name: marks[i + 1][1] - t for i, (name, t) in enumerate(marks[:-1])}


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--release", action="append", choices=["13", "12"],
                    help="Debian release of the hosts (repeatable; default: 13 and 12)")
    ap.add_argument("--compute", action="store_true",
                    help="also Placement, Neutron and Nova, ending with a test boot")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench needs root (it boots sandbox hosts)", file=sys.stderr)
        return 2
    rc = 0
    for rel in args.release or ["13", "12"]:
        rc |= bench_release(rel, args.compute)
    return rc


def passwords(compute: bool) -> dict[str, str]:
    return {**PASSWORDS, **(COMPUTE_PASSWORDS if compute else {})}


def write_profile(a, compute: bool) -> Path:
    """The profile 'bench' for host A: the script's passwords; with compute, every service
    but Horizon and the test guest as the image."""
    from tui.cli import write_sandbox_profile
    from tui.tasks import profile as pr
    from tui.tasks.secrets import write_secrets_file

    path = write_sandbox_profile(a, name="bench")
    if compute:
        from tui.tasks.sandbox import guest

        prof = pr.load("bench")
        prof.openstack.services = [s for s in pr.SERVICES
                                   if s in pr.DEFAULT_SERVICES or s in COMPUTE_SERVICES]
        prof.image.file, prof.image.url = str(guest.guest_image(a)), ""
        path = pr.save(prof)
    write_secrets_file(path.with_name("bench.secrets.toml"),
                       {SECRET_NAMES[k]: v for k, v in passwords(compute).items()})
    return path


def run_script(b, release: str, compute: bool, image: str) -> tuple[subprocess.CompletedProcess, float]:
    """bench/manual.sh (then manual-compute.sh) on host B over plain ssh, timed.

    The script is copied, not fed on stdin: a command in it that reads its stdin (one of
    Debian 12's service enables did) would eat the rest of the script."""
    script = (ROOT / "bench" / "manual.sh").read_text()
    if compute:
        script += (ROOT / "bench" / "manual-compute.sh").read_text()
    with tempfile.NamedTemporaryFile("w", suffix=".sh") as f:
        f.write(script)
        f.flush()
        for src, dst in ((image, "/root/image.qcow2"), (f.name, "/root/manual.sh")):
            subprocess.run(["scp", "-q", "-i", b.key_file, "-o", "StrictHostKeyChecking=no",
                            "-o", "UserKnownHostsFile=/dev/null", src,
                            f"root@{b.address}:{dst}"], check=True)
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in passwords(compute).items())
    t0 = time.monotonic()
    rs = ssh(b, f"env {env} REL={release} HOST={b.address} IMAGE=/root/image.qcow2 "
                f"COMPUTE={int(compute)} sh /root/manual.sh </dev/null", timeout=3600)
    return rs, time.monotonic() - t0


def bench_release(release: str, compute: bool = False) -> int:
    print(f"==== Debian {release}" + (" (compute)" if compute else ""), flush=True)
    home = Path(tempfile.mkdtemp(prefix="stack-tui-bench-"))
    os.environ["STACK_TUI_HOME"] = str(home)
    os.environ.setdefault("STACK_TUI_CACHE_DIR", "/var/cache/stack-tui-test")
    from tui.tasks import engine, sandbox
    from tui.tasks.profile import load

    names = [f"bench-a-{os.getpid()}", f"bench-b-{os.getpid()}"]
    results: dict[str, object] = {}
    try:
        a = sandbox.up(names[0], release=release)
        b = sandbox.up(names[1], release=release)
        write_profile(a, compute)

        print("== full install, stack-tui apply (fresh host A) ...", flush=True)
        r, t_tui = cli("apply", "bench", "--yes", "--accept-new-host-key", timeout=3600)
        if r.returncode != 0:
            print(r.stdout[-3000:], r.stderr[-2000:])
            return 1
        phases_tui = phase_times_stack_tui(engine.state_path("bench", a.address))

        print("== full install, straight shell script (fresh host B) ...", flush=True)
        rs, t_script = run_script(b, release, compute, load("bench").image.file)
        if rs.returncode != 0:
            print("the straight script failed:\n", rs.stdout[-3000:], rs.stderr[-5000:])
            return 1
        phases_script = phase_times_script(rs.stdout)

        print("== re-run with everything done ...", flush=True)
        reruns = []
        for _ in range(3):
            rr, took = cli("apply", "bench", "--yes")
            if rr.returncode != 0 or "OK: 0 done," not in rr.stdout:
                print("a re-run changed something or failed:\n", rr.stdout[-3000:])
                return 1
            reruns.append(took)
        results = {
            "t_tui": t_tui, "t_script": t_script, "phases_tui": phases_tui,
            "phases_script": phases_script, "reruns": reruns, "release": release,
            "compute": compute, **client_figures(),
            "mem_tui": host_memory_mib(a), "mem_script": host_memory_mib(b),
            "top_tui": host_memory_top(a), "top_script": host_memory_top(b),
        }
    finally:
        for n_ in names:
            try:
                sandbox.down(n_)
            except Exception as exc:  # noqa: BLE001
                print(f"cleanup of {n_} failed: {exc}", file=sys.stderr)
    report(results)
    return 0


def client_figures() -> dict:
    """stack-tui --help, TUI first paint, and the per-command overhead on one connection."""
    helps = []
    for _ in range(7):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "tui.cli", "--help"], capture_output=True, cwd=ROOT)
        helps.append(time.monotonic() - t0)
    paint = first_paint()

    from tui.tasks import runner
    from tui.tasks.profile import load

    sess = runner.open_session(load("bench"))
    sess.transport.connect()
    sess.transport.run("true")
    n = 100
    t0 = time.monotonic()
    for _ in range(n):
        sess.transport.run("true")
    per_cmd = (time.monotonic() - t0) / n
    sess.close()
    return {"help": statistics.median(helps), "paint": paint, "per_cmd": per_cmd}


def first_paint() -> float | None:
    """Seconds from process start to the first screen painted (headless)."""
    code = (
        "import time; t0 = time.monotonic()\n"
        "from tui.app import make_app\n"
        "app = make_app()\n"
        "async def auto(pilot):\n"
        "    await pilot.pause()\n"  # the first screen is mounted and has been painted
        "    print(f'PAINT {time.monotonic() - t0:.4f}')\n"
        "    app.exit()\n"
        "app.run(headless=True, auto_pilot=auto, size=(100, 30))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    for line in r.stdout.splitlines():
        if line.startswith("PAINT "):
            return float(line.split()[1])
    return None


def report(r: dict) -> None:
    if not r:
        return
    import platform

    ratio = r["t_tui"] / r["t_script"]
    print()
    print(f"stack-tui benchmark, Debian {r['release']} hosts"
          + (", compute all-in-one" if r["compute"] else "")
          + f", {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"{platform.platform()}")
    print()
    print("| phase | stack-tui (s) | straight script (s) |")
    print("|---|---|---|")
    for ph in (*PHASES, *(COMPUTE_PHASES if r["compute"] else ()), "finish"):
        a = r["phases_tui"].get(ph)
        b = r["phases_script"].get(ph)
        print(f"| {ph} | {'-' if a is None else f'{a:.1f}'} | {'-' if b is None else f'{b:.1f}'} |")
    print(f"| **full install (wall)** | **{r['t_tui']:.1f}** | **{r['t_script']:.1f}** |")
    print()
    print(f"ratio stack-tui / script: {ratio:.2f} (target < 0.9)")
    print(f"re-run, everything done: {', '.join(f'{x:.1f}' for x in r['reruns'])} s (target < 10 s)")
    print(f"stack-tui --help: {r['help'] * 1000:.0f} ms (median of 7; target < 300 ms)")
    print("TUI first paint: " + (f"{r['paint'] * 1000:.0f} ms (target < 1 s)" if r["paint"] else "n/a"))
    print(f"remote command overhead on one SSH connection: {r['per_cmd'] * 1000:.1f} ms per command")
    print(f"memory on the host after install (sum of PSS): stack-tui {r['mem_tui']:.0f} MiB, "
          f"straight script {r['mem_script']:.0f} MiB"
          + ("" if r["compute"] else " (target < 800 MiB)"))
    for side in ("tui", "script"):
        print(f"  biggest on the {side} host: " + ", ".join(
            f"{name} {mib:.0f} MiB ({n})" for name, mib, n in r[f"top_{side}"]))


if __name__ == "__main__":
    sys.exit(main())
