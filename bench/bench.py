#!/usr/bin/env python3
"""Benchmark: stack-tui against a straight shell script of the manual procedure.

    sudo .venv/bin/python bench/bench.py                 # Debian 13, then Debian 12
    sudo .venv/bin/python bench/bench.py --release 13    # one release

Two identical fresh sandbox hosts (same cached base rootfs, same warm apt archive
cache).  On one, `stack-tui apply` (the real CLI); on the other, bench/manual.sh over
plain ssh.  Then: the re-run time, `stack-tui --help`, TUI first paint, the per-command
overhead on one SSH connection, and memory used on the host after the install.
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


def phase_times_stack_tui(state_file: Path) -> dict[str, float]:
    import json

    data = json.loads(state_file.read_text())
    out: dict[str, float] = {}
    for step, entry in data["steps"].items():
        out[step.split(".")[0]] = out.get(step.split(".")[0], 0.0) + entry.get("duration", 0.0)
    return out


def phase_times_script(stdout: str) -> dict[str, float]:
    marks = [(ln.split()[1], float(ln.split()[2])) for ln in stdout.splitlines() if ln.startswith("@@ ")]
    return {name: marks[i + 1][1] - t for i, (name, t) in enumerate(marks[:-1])}


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--release", action="append", choices=["13", "12"],
                    help="Debian release of the hosts (repeatable; default: 13 and 12)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench needs root (it boots sandbox hosts)", file=sys.stderr)
        return 2
    rc = 0
    for rel in args.release or ["13", "12"]:
        rc |= bench_release(rel)
    return rc


def bench_release(release: str) -> int:
    print(f"==== Debian {release}", flush=True)
    home = Path(tempfile.mkdtemp(prefix="stack-tui-bench-"))
    os.environ["STACK_TUI_HOME"] = str(home)
    os.environ.setdefault("STACK_TUI_CACHE_DIR", "/var/cache/stack-tui-test")
    from tui.cli import write_sandbox_profile
    from tui.tasks import engine, sandbox
    from tui.tasks.secrets import write_secrets_file

    names = [f"bench-a-{os.getpid()}", f"bench-b-{os.getpid()}"]
    results: dict[str, object] = {}
    try:
        a = sandbox.up(names[0], release=release)
        b = sandbox.up(names[1], release=release)
        path = write_sandbox_profile(a, name="bench")
        write_secrets_file(path.with_name("bench.secrets.toml"), {
            "admin_password": PASSWORDS["ADMIN_PASS"], "demo_password": PASSWORDS["DEMO_PASS"],
            "keystone_db_password": PASSWORDS["KEYSTONE_DBPASS"],
            "glance_db_password": PASSWORDS["GLANCE_DBPASS"],
            "glance_password": PASSWORDS["GLANCE_PASS"],
            "rabbit_password": PASSWORDS["RABBIT_PASS"]})

        print("== full install, stack-tui apply (fresh host A) ...", flush=True)
        r, t_tui = cli("apply", "bench", "--yes", "--accept-new-host-key")
        if r.returncode != 0:
            print(r.stdout[-3000:], r.stderr[-2000:])
            return 1
        phases_tui = phase_times_stack_tui(engine.state_path("bench", a.address))

        print("== full install, straight shell script (fresh host B) ...", flush=True)
        subprocess.run(["scp", "-q", "-i", b.key_file, "-o", "StrictHostKeyChecking=no",
                        "-o", "UserKnownHostsFile=/dev/null", b.image_file,
                        f"root@{b.address}:/root/image.qcow2"], check=True)
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in PASSWORDS.items())
        script = (ROOT / "bench" / "manual.sh").read_text()
        t0 = time.monotonic()
        rs = ssh(b, f"env {env} REL={release} HOST={b.address} IMAGE=/root/image.qcow2 sh -s",
                 stdin=script)
        t_script = time.monotonic() - t0
        if rs.returncode != 0:
            print("the straight script failed:\n", rs.stdout[-2000:], rs.stderr[-3000:])
            return 1
        phases_script = phase_times_script(rs.stdout)

        print("== re-run with everything done ...", flush=True)
        reruns = [cli("apply", "bench", "--yes")[1] for _ in range(3)]

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

        mem_a, mem_b = host_memory_mib(a), host_memory_mib(b)
        results = {
            "t_tui": t_tui, "t_script": t_script, "phases_tui": phases_tui,
            "phases_script": phases_script, "reruns": reruns, "help": statistics.median(helps),
            "paint": paint, "per_cmd": per_cmd, "mem_tui": mem_a, "mem_script": mem_b,
            "release": release,
        }
    finally:
        for n_ in names:
            try:
                sandbox.down(n_)
            except Exception as exc:  # noqa: BLE001
                print(f"cleanup of {n_} failed: {exc}", file=sys.stderr)
    report(results)
    return 0


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
    print(f"stack-tui benchmark, Debian {r['release']} hosts, {time.strftime('%Y-%m-%d')}, "
          f"{os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"{platform.platform()}")
    print()
    print("| phase | stack-tui (s) | straight script (s) |")
    print("|---|---|---|")
    for ph in ("prepare", "mariadb", "rabbitmq", "memcached", "keystone", "glance", "image", "finish"):
        a = r["phases_tui"].get(ph)
        b = r["phases_script"].get(ph)
        print(f"| {ph} | {a:.1f} | {b:.1f} |" if a is not None and b is not None
              else f"| {ph} | {a if a is None else f'{a:.1f}'} | {b if b is None else f'{b:.1f}'} |")
    print(f"| **full install (wall)** | **{r['t_tui']:.1f}** | **{r['t_script']:.1f}** |")
    print()
    print(f"ratio stack-tui / script: {ratio:.2f} (target < 0.9)")
    print(f"re-run, everything done: {', '.join(f'{x:.1f}' for x in r['reruns'])} s (target < 10 s)")
    print(f"stack-tui --help: {r['help'] * 1000:.0f} ms (median of 7; target < 300 ms)")
    print(f"TUI first paint: " + (f"{r['paint'] * 1000:.0f} ms (target < 1 s)" if r["paint"] else "n/a"))
    print(f"remote command overhead on one SSH connection: {r['per_cmd'] * 1000:.1f} ms per command")
    print(f"memory on the host after install (sum of PSS): stack-tui {r['mem_tui']:.0f} MiB, "
          f"straight script {r['mem_script']:.0f} MiB (target < 800 MiB)")


if __name__ == "__main__":
    sys.exit(main())
