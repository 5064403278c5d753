"""`stack-tui sandbox`: throwaway local hosts (one, or a group), and the profiles that point
at them.  Imports are deferred so `stack-tui --help` stays fast."""

from __future__ import annotations

from .cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _err

# -- sandbox -------------------------------------------------------------------------
def cmd_sandbox(args) -> int:
    from .tasks import sandbox

    log = lambda s: print(s, flush=True)  # noqa: E731
    try:
        if args.action == "up" and args.hosts > 1:
            return _sandbox_group_up(sandbox, args, log)
        if args.action == "up":
            info = sandbox.up(args.name, log=log, release=args.release)
            path = write_sandbox_profile(info)
            # Keys this command generated and read from the sandbox's own files, not
            # over the network: nothing for the user to check that we cannot.
            prints = sandbox.trust_own_host_keys(info)
            print(f"Sandbox {args.name} is up: ssh -i {info.key_file} root@{info.address}\n"
                  f"Its SSH host keys (made by this command) are trusted: {', '.join(prints)}\n"
                  f"Profile written: {path}\n"
                  f"Install with: stack-tui apply {args.name} "
                  f"(or open the TUI: stack-tui --profile {args.name})")
            return EXIT_OK
        if args.action == "down" and sandbox.group_exists(args.name):
            return _sandbox_group_down(sandbox, args.name, log)
        if args.action == "down" and sandbox.group_of(args.name):
            _err(f"stack-tui sandbox: {args.name} is a host of group {sandbox.group_of(args.name)}; "
                 f"remove the whole group: stack-tui sandbox down --name {sandbox.group_of(args.name)}")
            return EXIT_FAILED
        if args.action == "down":
            if sandbox.down(args.name, log=log):
                print(f"Sandbox {args.name} removed.")
            else:
                print(f"No sandbox named {args.name}.")
            return EXIT_OK
        if args.action == "status" and sandbox.group_exists(args.name):
            return _sandbox_group_status(sandbox, sandbox.group_status(args.name), args.name)
        if args.action == "status":
            st = sandbox.status(args.name)
            if not st:
                print(f"No sandbox named {args.name}.")
                return EXIT_FAILED
            for k, v in st.items():
                print(f"{k:14s} {v}")
            return EXIT_OK
    except sandbox.SandboxError as exc:
        _err(f"stack-tui sandbox: {exc}")
        return EXIT_FAILED
    return EXIT_USAGE


def _sandbox_group_up(sandbox, args, log) -> int:
    from .tasks.sandbox import profiles

    hosts = sandbox.group_up(args.name, args.hosts, log=log, release=args.release)
    st = sandbox.group_status(args.name) or {}
    print(f"Group {args.name}: {len(hosts)} Debian {args.release} hosts, management network "
          f"{st.get('mgmt_subnet')} (interface mgmt0) and provider network (interface prov0, no "
          f"address), bridged in network namespace {st.get('netns')}.")
    mgmt = {h["name"]: h["mgmt_address"] for h in st.get("hosts", [])}
    for info in hosts:
        path = write_sandbox_profile(info, mgmt_address=mgmt.get(info.name))
        prints = sandbox.trust_own_host_keys(info)
        print(f"  {info.name}: ssh -i {info.key_file} root@{info.address} "
              f"(management {mgmt.get(info.name)}); host keys trusted: {', '.join(prints)}; "
              f"profile written: {path}")
    path = profiles.write_group_profile(args.name, hosts, mgmt)
    print(f"Group profile written: {path} ({hosts[0].name} the controller, "
          f"{', '.join(h.name for h in hosts[1:])} compute; see stack-tui profiles show {args.name})")
    print(f"Install the group with: stack-tui apply {args.name} (or one host alone: "
          f"stack-tui apply {hosts[0].name}). "
          f"Remove the group with: stack-tui sandbox down --name {args.name}")
    return EXIT_OK


def _sandbox_group_down(sandbox, name: str, log) -> int:
    from .tasks.sandbox import profiles

    infos = sandbox.group_host_infos(name)   # before down removes the records
    ours = profiles.is_group_profile(name, infos)
    sandbox.group_down(name, log=log)
    print(f"Group {name} removed (every host, its bridges and its namespace).")
    try:
        if ours and profiles.remove_group_profile(name):
            print(f"Profile {name} removed (the one sandbox up wrote for the group); the "
                  "hosts' own profiles are kept, as a single sandbox's is.")
    except (ValueError, OSError) as exc:  # ValueError: a ProfileError (not a file there)
        _err(f"stack-tui sandbox: the group is removed, but not its profile {name}: {exc}; "
             f"remove it with: stack-tui profiles delete {name}")
        return EXIT_FAILED
    return EXIT_OK


def _sandbox_group_status(sandbox, st, name: str) -> int:
    from .tasks.sandbox import profiles

    if not st:
        print(f"No group named {name}.")
        return EXIT_FAILED
    for key in ("group", "release", "netns", "netns_exists", "mgmt_subnet", "mgmt_bridge",
                "provider_bridge"):
        print(f"{key:14s} {st[key]}")
    for h in st["hosts"]:
        print(f"host           {h['name']:20s} mgmt {h['mgmt_address']:15s} ssh {h['address']} "
              f"{'running' if h['alive'] else 'NOT running'}")
    if profiles.is_group_profile(name, sandbox.group_host_infos(name)):
        print(f"profile        {name}")
    return EXIT_OK


def write_sandbox_profile(info, name: str | None = None, mgmt_address: str | None = None):
    """Create or update the profile pointing at a sandbox (keeps the user's other choices)."""
    from .tasks.sandbox import profiles

    return profiles.write_host_profile(info, name, mgmt_address)
