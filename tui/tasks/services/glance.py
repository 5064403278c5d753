"""Glance (images): service user, endpoints, config, schema, metadefs, service; the image upload."""

from __future__ import annotations

import re

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..engine import Phase, Step, StepError
from ..platforms import Platform
from .base import PerPlatform, Service, Port, Secret, Rule
from .catalog import authtoken, endpoints_ok, ensure_endpoints
from .common import (
    db_sync_step, manage, wait_http, admin_session, db_url, ensure_service, ensure_user,
    forward, image_url, ini_target, platform_of, one_line_settings, put_file, service_ok,
    SERVICE_ROLES, LOOK, SQL,
)


GLANCE_CONF = "/etc/glance/glance-api.conf"
GLANCE_STAGING = "/var/lib/glance/staging/"
GLANCE_TASKS = "/var/lib/glance/tasks_work_dir/"


@dataclass(frozen=True)
class Layout:
    service: str                 # the glance-api systemd unit
    # Glance checks an upload against its disk_format (Glance 30, Epoxy); Zed's accepts anything.
    checks_disk_format: bool = True


LAYOUT: PerPlatform[Layout] = PerPlatform(
    deb=Layout("glance-api"), rpm=Layout("openstack-glance-api"),
    overrides={"debian-12": {"checks_disk_format": False},
               "ubuntu-22.04": {"checks_disk_format": False}})  # both Zed
PACKAGES = PerPlatform(deb=("glance-api",), rpm=("openstack-glance",))


def layout(plat: Platform) -> Layout:
    return LAYOUT(plat)


def _glance_user_check(ctx) -> bool:
    return ensure_user(ctx, "glance", ctx.secrets["glance_password"], "service",
                       SERVICE_ROLES, check_only=True)


def _glance_user_run(ctx) -> None:
    ensure_user(ctx, "glance", ctx.secrets["glance_password"], "service", SERVICE_ROLES)


def _image_endpoints_check(ctx) -> bool:
    return endpoints_ok(ctx, "image", image_url(ctx))


def _image_endpoints_run(ctx) -> None:
    ensure_endpoints(ctx, "glance", "image", "OpenStack Image", image_url(ctx))


def _glance_settings(ctx) -> dict:
    return one_line_settings(GLANCE_CONF, _glance_values(ctx))


def _glance_values(ctx) -> dict:
    s = {
        ("database", "connection"): db_url(ctx, "glance", "glance_db_password"),
        **authtoken(ctx, "glance", "glance_password"),
        ("paste_deploy", "flavor"): "keystone",
    }
    # Multi-store on every release (Zed has it too): the legacy stores/default_store
    # options are deprecated for removal in Epoxy.
    s.update({
        ("DEFAULT", "enabled_backends"): "fs:file",
        ("glance_store", "default_backend"): "fs",
        ("fs", "filesystem_store_datadir"): "/var/lib/glance/images/",
        # the reserved stores of interoperable import (deprecation-free since Wallaby)
        ("os_glance_staging_store", "filesystem_store_datadir"): GLANCE_STAGING,
        ("os_glance_tasks_store", "filesystem_store_datadir"): GLANCE_TASKS,
        # a legacy single-store config of an earlier install is cleaned out
        ("glance_store", "stores"): None,
        ("glance_store", "default_store"): None,
        ("glance_store", "filesystem_store_datadir"): None,
    })
    return s


def _glance_conf_check(ctx) -> bool:
    old, new = ini_target(ctx, GLANCE_CONF, _glance_settings(ctx))
    return old == new and ctx.sh(f"test -d {GLANCE_STAGING} && test -d {GLANCE_TASKS}",
                                 check=False, quiet=True, timeout=LOOK).ok


def _glance_conf_run(ctx) -> None:
    old, new = ini_target(ctx, GLANCE_CONF, _glance_settings(ctx))
    ctx.sh(f"install -d -o glance -g glance -m 750 {GLANCE_STAGING} {GLANCE_TASKS}",
           quiet=True, timeout=LOOK)
    if put_file(ctx, GLANCE_CONF, new, mode=0o640, owner="root", group="glance", old=old):
        ctx.cache["glance_conf_changed"] = True


def _metadefs_check(ctx) -> bool:
    # Read-only: how many namespaces the catalogue holds (0 = never loaded).
    r = ctx.sh("mysql --batch --skip-column-names -e "
               "'SELECT COUNT(*) FROM glance.metadef_namespaces' 2>/dev/null",
               check=False, quiet=True, timeout=SQL)
    return r.ok and r.stdout.strip().isdigit() and int(r.stdout.strip()) > 0


def _metadefs_run(ctx) -> None:
    # Horizon's image-metadata forms and Tempest's metadefs tests need the catalogue;
    # loading it only when empty keeps a re-run from reloading it.
    manage(ctx, "glance", "glance-manage db_load_metadefs")


def _glance_service_check(ctx) -> bool:
    unit = layout(platform_of(ctx)).service
    if not service_ok(ctx, unit):
        return False
    # A running glance-api started before its config last changed must be restarted.
    r = ctx.sh(f"test $(stat -c %Y {GLANCE_CONF}) -le "
               f"$(date -d \"$(systemctl show -p ActiveEnterTimestamp --value {unit})\" +%s)"
               " && curl -s -o /dev/null --max-time 5 http://127.0.0.1:9292/", check=False, quiet=True,
               timeout=LOOK)
    return r.ok


def _glance_service_run(ctx) -> None:
    unit = layout(platform_of(ctx)).service
    active = ctx.sh(f"systemctl is-active -q {unit}", check=False, quiet=True,
                    timeout=LOOK).ok
    ensure_service(ctx, unit, restart=active)
    wait_http(ctx, "http://127.0.0.1:9292/", "Glance", unit,
               "/var/log/glance/glance-api.log")


def glance_client(ctx, session=None):
    from glanceclient import Client

    return Client("2", session=session or admin_session(ctx),
                  endpoint=f"http://127.0.0.1:{forward(ctx, 9292)}")


def image_path(ctx) -> tuple[str, Path]:
    """The image's source (the profile's file or URL) and where its bytes are or will be
    on this machine (a URL's download lands in the cache). Looks, never fetches."""
    img = ctx.profile.image
    if img.file:
        path = Path(img.file).expanduser()
        return str(path), path
    url = img.source()
    if not url:
        raise StepError("The profile asks for no image ([image] upload = false).", "",
                        "set upload = true, or skip this step")
    return url, paths.cache_dir() / "images" / hashlib.sha256(url.encode()).hexdigest()[:16]


def image_source(ctx) -> Path:
    """The image file on this machine, downloading a URL's image into the cache first."""
    url, dest = image_path(ctx)
    if ctx.profile.image.file:
        if not dest.is_file():
            raise StepError(f"The image file {dest} does not exist.", "",
                            "fix [image] file in the profile")
        return dest
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        ctx.output(f"downloading {url}")
        tmp = dest.with_suffix(".part")
        try:
            _download(ctx, url, tmp)
        except OSError as exc:
            raise download_error(url, exc) from None
        tmp.replace(dest)
    return dest


def _download(ctx, url: str, dest: Path) -> None:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as resp, open(dest, "wb") as fh:
        total = int(resp.headers.get("Content-Length") or 0)
        done = 0
        while chunk := resp.read(1 << 20):
            if ctx.cancel.is_set():
                raise StepError("Image download cancelled.", "", "Retry downloads it again")
            fh.write(chunk)
            done += len(chunk)
            ctx.progress(done, total or done, f"downloaded {_mb(done)} of {_mb(total or done)}")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def download_error(url: str, exc: OSError) -> StepError:
    """An image URL this machine could not fetch, said plainly (the usual cause: no internet)."""
    import socket
    import urllib.error
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or url
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(exc, urllib.error.HTTPError):
        what = f"The image URL answered HTTP {exc.code}: {url}"
        why = f"{host} has no image at that address"
    elif isinstance(reason, socket.gaierror):
        what = f"This machine cannot download the image: {host} does not resolve here."
        why = "no internet access or no DNS on the machine running stack-tui (it downloads the image)"
    else:
        what = f"This machine cannot reach {host} to download the image."
        why = f"no internet access from the machine running stack-tui? ({reason})"
    return StepError(what, why,
                     "Skip (s) finishes the install without an image (headless: upload = false "
                     "in [image]); or download it elsewhere, copy it here and choose it as the "
                     "image file (Services screen, or [image] file in the profile)",
                     transient=True)


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _known_md5(ctx) -> str | None:
    """The image's md5 without fetching anything: read from the local file when it is
    here, else the one an earlier run recorded for the same source, else unknown."""
    source, path = image_path(ctx)
    if path.is_file():
        return file_md5(path)
    seen = ctx.facts.get("image")
    if isinstance(seen, dict) and seen.get("source") == _source_key(source):
        return seen.get("md5")
    return None


def _source_key(source: str) -> str:
    """What the state file records of the source: a digest, as a URL may hold a password."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _in_glance(gc, name: str, md5: str) -> bool:
    return any(i.get("checksum") == md5 and i.get("status") == "active"
               for i in gc.images.list(filters={"name": name}))


def _image_check(ctx) -> bool:
    """Done when Glance holds an active image of this name with the source's checksum.
    Only reads: a source not on this machine yet is "not done"; the run downloads it."""
    md5 = _known_md5(ctx)
    if md5 is None:
        return False
    return _in_glance(glance_client(ctx), ctx.profile.image.name, md5)


def glance_log_tail(ctx) -> list[str]:
    """The last lines of glance-api's log, bounded like any look at the host."""
    return ctx.sh("tail -n 20 /var/log/glance/glance-api.log", check=False, quiet=True,
                  timeout=LOOK).lines


def _image_run(ctx) -> None:
    src = image_source(ctx)
    md5 = file_md5(src)
    img = ctx.profile.image
    ctx.facts["image"] = {"source": _source_key(image_path(ctx)[0]), "md5": md5}
    gc = glance_client(ctx)
    if _in_glance(gc, img.name, md5):
        ctx.output(f"image {img.name} is already in Glance (md5 {md5})")
        return
    for old in list(gc.images.list(filters={"name": img.name})):
        if old.get("status") != "active" or old.get("checksum") != md5:
            if "stack-tui" in (old.get("tags") or []):
                ctx.output(f"removing stale image {old['id']} ({old.get('status')})")
                gc.images.delete(old["id"])
    image = gc.images.create(name=img.name, disk_format=img.disk_format,
                             container_format=img.container_format,
                             visibility=img.visibility, tags=["stack-tui"])
    size = src.stat().st_size
    ctx.output(f"uploading {src.name} ({size} bytes) as {img.name} ({image['id']})")

    class Progress:
        def __init__(self, fh):
            self.fh, self.done = fh, 0

        def read(self, n=-1):
            if ctx.cancel.is_set():
                raise StepError("Image upload cancelled.", "", "Retry uploads it again")
            data = self.fh.read(n)
            self.done += len(data)
            ctx.progress(self.done, size, f"uploaded {_mb(self.done)} of {_mb(size)}")
            return data

    with open(src, "rb") as fh:
        gc.images.upload(image["id"], Progress(fh), image_size=size)
    deadline = time.monotonic() + 300
    while True:
        cur = gc.images.get(image["id"])
        if cur["status"] == "active":
            break
        if cur["status"] in ("killed", "deleted", "deactivated") or time.monotonic() > deadline:
            tail = glance_log_tail(ctx)
            raise StepError(f"The image {img.name} ended up {cur['status']}, not active.",
                            "Glance could not store it", "check the store settings and disk space",
                            tail=tail)
        time.sleep(0.3)
    if cur.get("checksum") != md5:
        raise StepError("The uploaded image's checksum differs from the local file.",
                        f"expected {md5}, Glance says {cur.get('checksum')}", "Retry the upload")
    ctx.output(f"image {img.name} is active (md5 {md5})")


def phases(profile, plat: Platform) -> list[Phase]:
    """The glance phase, then the image upload."""
    gl_sync_check, gl_sync_run = db_sync_step("glance", "glance-manage db_sync",
                                               PACKAGES(plat)[0])
    out: list[Phase] = []
    out.append(Phase("glance", "Glance (images)", [
        Step("glance.user", "User glance with role admin on project service",
             run=_glance_user_run, check=_glance_user_check,
             detail="keystoneauth1: user glance, password ********, admin on service"),
        Step("glance.endpoints", "Service image and its three endpoints on 9292",
             run=_image_endpoints_run, check=_image_endpoints_check,
             detail="service glance (type image); public/internal/admin http://<endpoint host>:9292"),
        Step("glance.config", "glance-api.conf: database, keystone_authtoken, store",
             run=_glance_conf_run, check=_glance_conf_check, files=[GLANCE_CONF],
             detail="[database], [keystone_authtoken] (memcached), [paste_deploy] flavor=keystone, "
                    + "enabled_backends=fs:file, reserved staging/tasks stores"),
        Step("glance.db_sync", "Create the Glance database schema", run=gl_sync_run,
             check=gl_sync_check,
            detail="runuser -u glance -- glance-manage db_sync"),
        Step("glance.metadefs", "Load the metadata definitions catalogue",
             run=_metadefs_run, check=_metadefs_check,
             detail="runuser -u glance -- glance-manage db_load_metadefs "
                    "(only when glance.metadef_namespaces is empty)"),
        Step("glance.service", f"Start and enable {layout(plat).service}",
             run=_glance_service_run, check=_glance_service_check,
             detail=f"systemctl enable --now {layout(plat).service}; wait until :9292 answers"),
    ]))
    if profile.image.upload:
        out.append(Phase("image", "Image", [
            Step("image.upload", f"Upload image {profile.image.name}", run=_image_run,
                 check=_image_check, retries=1,
                 detail=f"glanceclient over the port forward: {profile.image.source()} "
                        f"({profile.image.disk_format}/{profile.image.container_format}, "
                        f"{profile.image.visibility}); skip when the same name and checksum exist"),
        ]))
    return out


# Its known failures, in plain words (tui/tasks/explain.py aggregates every service's).
RULES = (
    Rule("glance-store",
         re.compile(r"glance_store|Store for scheme|UnknownScheme|StoreAddDisabled|StorageFull|"
                    r"StorageWriteDenied|No space left on device|Image storage media is full|"
                    r"Insufficient permissions on image storage|ended up killed|"
                    r"Glance could not store", re.I),
         "error",
         "Glance could not write the image to its store (/var/lib/glance/images): store "
         "settings, permissions or disk space",
         "see glance-api.log below; check `df -h /var` and that /var/lib/glance/images belongs "
         "to glance, then Retry",
         logs=("glance",)),
    Rule("glance-auth",
         re.compile(r"(glance|9292|image)[^\n]*(\b401\b|Unauthorized)|"
                    r"(\b401\b|Unauthorized)[^\n]*(glance|9292)|Identity response: 40[13]|"
                    r"Unable to validate token|Bad response code while validating token|"
                    r"keystonemiddleware|HTTPUnauthorized", re.I),  # glanceclient's 401
         "error",
         "Glance could not validate tokens with Keystone: the [keystone_authtoken] settings in "
         "glance-api.conf (the glance user's password, auth_url, memcached) do not work",
         "Retry (glance.user and glance.config re-apply the password); glance-api.log below "
         "says what Keystone answered",
         logs=("glance",)),
)


SERVICE = Service(
    "glance", "Glance", "images", phases,
    requires=("keystone", "mariadb", "memcached"),
    secrets=(Secret("glance_db_password", "MariaDB user 'glance'", "database"),
             Secret("glance_password", "Keystone 'glance' service user", "keystone")),
    ports=(Port(9292, frozenset({"glance-api"}), "Glance API"),),
    database="glance",
    configs=lambda plat: (GLANCE_CONF,),
    units=lambda plat: (layout(plat).service,),
    logs=lambda plat: ("/var/log/glance/glance-api.log",),
    rules=RULES,
    packages=PACKAGES,
)
