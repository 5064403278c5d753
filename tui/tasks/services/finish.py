"""Finish: admin/demo openrc files and clouds.yaml, on the host and locally; the verification."""

from __future__ import annotations

import json
from pathlib import Path

from .. import paths
from ..engine import Phase, Step, StepError
from ..platforms import Platform
from .common import LOOK
from .common import admin_session, can_auth, identity_url, q, read_remote, user_session
from .glance import glance_client


def openrc(ctx, user: str, project: str, password: str) -> str:
    lines = [
        "# Written by stack-tui",
        "export OS_PROJECT_DOMAIN_NAME=Default",
        "export OS_USER_DOMAIN_NAME=Default",
        f"export OS_PROJECT_NAME={q(project)}",
        f"export OS_USERNAME={q(user)}",
        f"export OS_PASSWORD={q(password)}",
        f"export OS_AUTH_URL={q(identity_url(ctx).rstrip('/'))}",
        f"export OS_REGION_NAME={q(ctx.profile.openstack.region)}",
        "export OS_IDENTITY_API_VERSION=3",
        "export OS_IMAGE_API_VERSION=2",
    ]
    return "\n".join(lines) + "\n"


def rc_files(ctx) -> dict[str, str]:
    out = {"admin-openrc.sh": openrc(ctx, "admin", "admin", ctx.secrets["admin_password"])}
    if ctx.profile.openstack.demo and "keystone" in ctx.profile.openstack.services:
        out["demo-openrc.sh"] = openrc(ctx, "demo", "demo", ctx.secrets["demo_password"])
    return out


def _yaml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def clouds_yaml(ctx) -> str:
    name = ctx.profile.name
    users = [("", "admin", "admin", ctx.secrets["admin_password"])]
    if ctx.profile.openstack.demo:
        users.append(("-demo", "demo", "demo", ctx.secrets["demo_password"]))
    out = ["# Written by stack-tui", "clouds:"]
    for suffix, user, project, pw in users:
        out += [
            f"  {_yaml_str(name + suffix)}:",
            "    auth:",
            f"      auth_url: {_yaml_str(identity_url(ctx).rstrip('/'))}",
            f"      username: {_yaml_str(user)}",
            f"      password: {_yaml_str(pw)}",
            f"      project_name: {_yaml_str(project)}",
            "      user_domain_name: Default",
            "      project_domain_name: Default",
            f"    region_name: {_yaml_str(ctx.profile.openstack.region)}",
            "    identity_api_version: 3",
            "    image_api_version: 2",
            "    interface: public",
        ]
    return "\n".join(out) + "\n"


def local_dir(ctx) -> Path:
    return paths.data_dir() / "clouds" / ctx.profile.name


def remote_home(ctx) -> str:
    user = ctx.profile.host.user
    if user == "root":
        return "/root"
    r = ctx.sh(f"getent passwd {q(user)} | cut -d: -f6", quiet=True, timeout=LOOK)
    return r.stdout.strip() or f"/home/{user}"


def _openrc_check(ctx) -> bool:
    home = remote_home(ctx)
    for name, body in rc_files(ctx).items():
        if read_remote(ctx, f"{home}/{name}") != body:
            return False
    d = local_dir(ctx)
    wanted = {**rc_files(ctx), "clouds.yaml": clouds_yaml(ctx)}
    for name, body in wanted.items():
        p = d / name
        if not p.exists() or p.read_text(encoding="utf-8") != body or p.stat().st_mode & 0o077:
            return False
    return True


def _openrc_run(ctx) -> None:
    from ..fsutil import atomic_write

    home = remote_home(ctx)
    user = ctx.profile.host.user
    for name, body in rc_files(ctx).items():
        if read_remote(ctx, f"{home}/{name}") != body:
            ctx.output(f"writing {home}/{name} on the host (0600)")
            ctx.transport.write_file(f"{home}/{name}", body, mode=0o600, owner=user)
    d = local_dir(ctx)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, body in {**rc_files(ctx), "clouds.yaml": clouds_yaml(ctx)}.items():
        atomic_write(d / name, body.encode("utf-8"), mode=0o600)
        ctx.output(f"saved {d / name} (0600)")
    ctx.facts["local_files"] = str(d)


def verify_cloud(ctx) -> list[tuple[str, bool, str]]:
    """The end-of-run checks, each (what, ok, detail)."""
    results = []
    svc = set(ctx.profile.openstack.services)

    def add(what, ok, detail=""):
        results.append((what, bool(ok), detail))
        ctx.output(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail else ""))

    if "keystone" in svc:
        admin = admin_session(ctx)
        # A token issued now: the run's cached one predates the endpoints this run made,
        # and its catalog would lack them.
        admin.invalidate()
        try:
            admin.get_token()
            add("token as admin", True)
        except Exception as exc:  # noqa: BLE001
            add("token as admin", False, ctx.redact(str(exc)))
            return results
        demo_ok = False
        if ctx.profile.openstack.demo:
            demo_ok = can_auth(ctx, "demo", ctx.secrets["demo_password"], "demo")
            add("token as demo", demo_ok)
        catalog = admin.auth.get_access(admin).service_catalog.catalog
        types = sorted({c["type"] for c in catalog})
        add("catalog has identity", "identity" in types, ", ".join(types))
        if "glance" in svc:
            add("catalog has image", "image" in types)
            _check_image(ctx, add)
            if demo_ok:
                # A project member may list images under the default policies: proves
                # demo's role, not only its password.
                try:
                    demo = user_session(ctx, "demo", ctx.secrets["demo_password"], "demo")
                    n = len(list(glance_client(ctx, demo).images.list()))
                    add("demo lists images", True, f"{n} visible")
                except Exception as exc:  # noqa: BLE001
                    add("demo lists images", False, ctx.redact(str(exc)))
        if _per_host(ctx.profile):
            _check_servers(ctx, add)
    return results


def _per_host(profile) -> bool:
    """Several hosts with the demo cloud: cloud.boot left a server on each compute host."""
    from .cloudobjects import several_hosts

    return ({"nova", "neutron"} <= set(profile.openstack.services) and profile.openstack.demo
            and several_hosts(profile))


def _check_servers(ctx, add) -> None:
    """One line per compute host: its test server ACTIVE there, its floating IP answers."""
    from .cloudobjects import host_results

    try:
        for what, ok, detail in host_results(ctx):
            add(what, ok, detail)
    except Exception as exc:  # noqa: BLE001
        add("servers on the compute hosts", False, ctx.redact(str(exc)))


def image_outcome(ctx) -> str:
    """'none' (the profile asks for no image), 'skipped' (its step was skipped) or 'uploaded'."""
    from ..engine import Status

    if not ctx.profile.image.upload:
        return "none"
    if ctx.state.status("image.upload") == Status.SKIPPED:
        return "skipped"
    return "uploaded"


def _check_image(ctx, add) -> None:
    """The image is active, unless none was wanted or its upload was skipped (then no check)."""
    outcome = image_outcome(ctx)
    if outcome != "uploaded":
        ctx.output(f"no image check: {'no image chosen' if outcome == 'none' else 'its upload was skipped'}")
        return
    name = ctx.profile.image.name
    try:
        imgs = [i for i in glance_client(ctx).images.list(filters={"name": name})]
        active = [i for i in imgs if i.get("status") == "active"]
        add(f"image {name} active", bool(active), f"{len(active)} active of {len(imgs)}")
    except Exception as exc:  # noqa: BLE001
        add("image list", False, ctx.redact(str(exc)))


def _nothing_changed_this_run(ctx) -> bool:
    """Every step before finish.verify was found already done in this run (the run
    state's entries updated since the run started); a step that changed something, or
    one not checked in this run, means the cloud must be verified again."""
    from ..engine import Status

    started = ctx.state.started or 0
    engine = getattr(ctx, "engine", None)
    ids = ([s.id for s in engine.plan.steps()] if engine is not None
           else list(ctx.state.steps))
    for sid in ids:
        if sid == "finish.verify":
            continue
        entry = ctx.state.steps.get(sid, {})
        if entry.get("status") != Status.ALREADY_DONE.value or entry.get("updated", 0) < started:
            return False
    return True


def _verify_check(ctx) -> bool:
    """Only reads: done when the recorded verification passed and nothing changed since."""
    recorded = ctx.facts.get("verification")
    if not recorded or not all(isinstance(r, list) and len(r) == 3 and r[1] is True
                               for r in recorded):
        return False
    return _nothing_changed_this_run(ctx)


def _verify_run(ctx) -> None:
    results = verify_cloud(ctx)
    ctx.facts["verification"] = [list(r) for r in results]
    bad = [f"{w} ({d})" if d else w for w, ok, d in results if not ok]
    if bad:
        raise StepError("Verification failed: " + "; ".join(bad) + ".",
                        "the cloud does not yet answer as it should",
                        "look at the failing check's service log, then Retry")


def phases(profile, plat: Platform) -> list[Phase]:
    """openrc files, clouds.yaml, and the verification."""
    image = profile.image.upload and "glance" in profile.openstack.services
    return [Phase("finish", "Finish and verify", [
        Step("finish.openrc", "admin-openrc.sh, demo-openrc.sh and clouds.yaml",
             run=_openrc_run, check=_openrc_check,
             files=["~/admin-openrc.sh", "~/demo-openrc.sh"],
             detail="on the host (0600) and locally under the profile's data dir (0600)"),
        Step("finish.verify", "Verify: tokens, catalog, image active" if image
             else "Verify: tokens, catalog", run=_verify_run, check=_verify_check,
             detail="keystoneauth1 token as admin and demo; catalog has identity"
                    + (" and image; glanceclient image list shows the image active (no image "
                       "check when its upload was skipped)" if image else
                       " and image; no image uploaded (none chosen)"
                       if "glance" in profile.openstack.services else "")
                    + ("; on each compute host its test server is ACTIVE and its floating IP "
                       "answers ping" if _per_host(profile) else "")),
    ])]
