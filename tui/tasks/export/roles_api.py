"""The exported roles for Keystone and Glance (config, schema, keys, Apache, bootstrap, the
Keystone objects through openstack.cloud) and the finish (openrc files, the verification
the engine does: a token as admin and demo, the image listed)."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from ..services import finish, glance, keystone
from ..services.common import DEMO_ROLES, SERVICE_ROLES
from ..services.units import url_host
from . import source as src
from .roles_base import restart, role, service_up
from .source import var

TOKENS = "{{ stack_tui_identity_url }}auth/tokens"


def token_body(user: str, project: str) -> dict:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"},
        "password": "{{ %s }}" % var(f"{user}_password")}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}


def token_check(user: str, project: str, register: str, *, expect=(201, 401)) -> dict:
    return {"name": f"Does {user} get a token on project {project}",
            "ansible.builtin.uri": {"url": TOKENS, "method": "POST", "body_format": "json",
                                    "body": token_body(user, project),
                                    "status_code": list(expect)},
            "register": register, "no_log": True}


def marker_tasks(service: str, package: str, cmd: str) -> list[dict]:
    """db_sync when the engine's marker (package version, management address) differs:
    the same marker file, so a later `stack-tui apply` finds it done, and vice versa."""
    path = f"/var/lib/stack-tui/{service}.db_sync"
    want = ("{{ stack_tui_installed['%s'] }} "
            "{{ (stack_tui_mgmt_address | hash('sha256'))[:12] }}" % package)
    reg, want_var = f"stack_tui_{service}_marker", f"stack_tui_{service}_schema"
    return [
        {"name": f"The {service} schema's marker: package version and management address",
         "ansible.builtin.set_fact": {want_var: want}},
        {"name": f"When was the {service} schema last made", "ansible.builtin.slurp": {
            "src": path}, "register": reg, "failed_when": False},
        {"name": f"Create the {service} database schema",
         "ansible.builtin.command": f"runuser -u {service} -- {cmd}",
         "when": f"({reg}.content | default('') | b64decode | trim) != {want_var}"},
        {"name": f"Record the {service} schema's package version",
         "ansible.builtin.copy": {"dest": path, "content": "{{ %s }}\n" % want_var,
                                  "mode": "0644"}},
    ]


def _ini(path: str, items: list[dict], group: str, handler: str) -> list[dict]:
    """The settings, plain ones then the ones that hold a secret (no_log)."""
    base = {"path": path, "section": "{{ item.section }}", "option": "{{ item.option }}",
            "value": "{{ item.value | default(omit) }}", "state": "{{ item.state }}",
            "owner": "root", "group": group, "mode": "0640"}
    out = []
    for secret in (False, True):
        chosen = [{k: v for k, v in i.items() if k != "secret"} for i in items
                  if i["secret"] is secret]
        if chosen:
            t = {"name": f"{Path(path).name}: " + ("settings that hold a password" if secret
                                                     else "settings"),
                 "community.general.ini_file": base, "loop": chosen,
                 "loop_control": {"label": "{{ item.section }}.{{ item.option }}"},
                 "notify": handler}
            if secret:
                t["no_log"] = True
            out.append(t)
    return out


def _apache_tasks(ap: dict, web: str) -> list[dict]:
    """Keystone under Apache mod_wsgi on 5000 (keystone.apache)."""
    return [
        {"name": "mod_wsgi processes for this host (two per CPU, 2..8, one per 512 MiB)",
         "ansible.builtin.set_fact": {"stack_tui_wsgi_processes": "{{ [2, [8, 2 * "
             "ansible_facts['processor_vcpus'], [ansible_facts['memtotal_mb'] // 512, 2] "
             "| max] | min] | max }}"}},
        {"name": "Directory of the WSGI scripts", "ansible.builtin.file": {
            "path": "/usr/share/stack-tui", "state": "directory", "mode": "0755"}},
        {"name": "Keystone's WSGI script", "ansible.builtin.copy": {
            "dest": ap["script"][0], "content": ap["script"][1], "mode": "0644"},
         "notify": f"restart {web}"},
        {"name": "Keystone's vhost on port 5000", "ansible.builtin.template": {
            "src": "keystone-vhost.conf.j2", "dest": ap["vhost"][0], "mode": "0644"},
         "notify": f"restart {web}"},
        {"name": "Apache's ServerName", "ansible.builtin.copy": {
            "dest": ap["servername"][0], "content": ap["servername"][1], "mode": "0644"},
         "notify": f"restart {web}"},
        {"name": "mod_wsgi enabled", "community.general.apache2_module": {
            "name": "wsgi", "state": "present"}, "notify": f"restart {web}"},
        {"name": "Keystone's site and the ServerName enabled", "ansible.builtin.command": {
            "cmd": "{{ item.cmd }}", "creates": "{{ item.creates }}"},
         "loop": [{"cmd": "a2ensite -q keystone",
                   "creates": "/etc/apache2/sites-enabled/keystone.conf"},
                  {"cmd": "a2enconf -q servername",
                   "creates": "/etc/apache2/conf-enabled/servername.conf"}],
         "notify": f"restart {web}"},
    ]


def _bootstrap_tasks(profile) -> list[dict]:
    """keystone-manage bootstrap when admin does not get a token (keystone.bootstrap)."""
    return [
        token_check("admin", "admin", "stack_tui_admin_token"),
        {"name": "Bootstrap admin, its role and the identity endpoints (password in the "
                 "environment)",
         "ansible.builtin.command": "runuser -u keystone -- keystone-manage bootstrap "
             "--bootstrap-username admin --bootstrap-project-name admin "
             "--bootstrap-role-name admin " + " ".join(
                 f"--bootstrap-{i}-url {shlex.quote(_identity_url(profile))}"
                 for i in ("admin", "internal", "public"))
             + f" --bootstrap-region-id {shlex.quote(profile.openstack.region)}",
         "environment": {"OS_BOOTSTRAP_PASSWORD": "{{ %s }}" % var("admin_password")},
         "when": "stack_tui_admin_token.status != 201", "no_log": True},
        {**token_check("admin", "admin", "stack_tui_admin_token", expect=(201,)),
         "name": "admin gets a token now", "until": "stack_tui_admin_token.status == 201",
         "retries": 30, "delay": 2},
    ]


def keystone_role(profile) -> dict:
    ap = src.keystone_apache(profile)
    os_ = "openstack.cloud."
    web = src.PLATFORM.web_service
    keys = [{"name": f"{k.capitalize()} keys", "ansible.builtin.command": {
        "cmd": f"keystone-manage {k}_setup --keystone-user keystone --keystone-group keystone",
        "creates": f"/etc/keystone/{k}-keys/0"}} for k in ("fernet", "credential")]
    tasks = [
        *_ini(keystone.KEYSTONE_CONF, src.keystone_settings(profile), "keystone",
              f"restart {web}"),
        *marker_tasks("keystone", "keystone", "keystone-manage db_sync"),
        *keys,
        *_apache_tasks(ap, web),
        *service_up(web),
        {"name": "Keystone answers on 5000", "ansible.builtin.uri": {
            "url": "http://127.0.0.1:5000/v3/"}, "register": "stack_tui_ks_up",
         "until": "stack_tui_ks_up.status == 200", "retries": 60, "delay": 1},
        *_bootstrap_tasks(profile),
    ]
    projects = [("service", "Service Project")] + (
        [("demo", "Demo Project")] if profile.openstack.demo else [])
    tasks.append({"name": "Projects", os_ + "project": {
        "name": "{{ item.0 }}", "domain": "default", "description": "{{ item.1 }}",
        "state": "present"}, "loop": projects, "no_log": True})
    if profile.openstack.demo:
        tasks += user_tasks("demo", "demo", DEMO_ROLES)
    return role(tasks, handlers=[restart(web)],
                templates={"keystone-vhost.conf.j2": ap["vhost"][1]})


def _identity_url(profile) -> str:
    return f"http://{url_host(profile.endpoint_host)}:5000/v3/"


def user_tasks(user: str, project: str, roles) -> list[dict]:
    """User with its roles on the project; its password set again when it does not log in."""
    os_ = "openstack.cloud."
    reg = f"stack_tui_{user}_token"
    pw = "{{ %s }}" % var(f"{user}_password")
    return [
        {"name": f"User {user}", os_ + "identity_user": {
            "name": user, "password": pw, "domain": "default", "update_password": "on_create",
            "state": "present"}, "no_log": True},
        {"name": f"Roles of {user} on project {project}", os_ + "role_assignment": {
            "user": user, "project": project, "role": "{{ item }}", "state": "present"},
         "loop": list(roles), "no_log": True},
        token_check(user, project, reg),
        {"name": f"Set the password of {user} (it did not log in)", os_ + "identity_user": {
            "name": user, "password": pw, "domain": "default", "update_password": "always",
            "state": "present"}, "when": f"{reg}.status != 201", "no_log": True},
    ]


def glance_role(profile) -> dict:
    os_ = "openstack.cloud."
    unit = glance.layout(src.PLATFORM).service
    url = f"http://{url_host(profile.endpoint_host)}:9292"
    tasks = [
        *user_tasks("glance", "service", SERVICE_ROLES),
        {"name": "Service glance (image)", os_ + "catalog_service": {
            "name": "glance", "type": "image", "description": "OpenStack Image",
            "is_enabled": True, "state": "present"}, "no_log": True},
        {"name": "The image endpoints", os_ + "endpoint": {
            "service": "glance", "endpoint_interface": "{{ item }}", "url": url,
            "region": profile.openstack.region, "state": "present"},
         "loop": ["public", "internal", "admin"], "no_log": True},
        {"name": "Glance's staging and tasks directories", "ansible.builtin.file": {
            "path": "{{ item }}", "state": "directory", "owner": "glance", "group": "glance",
            "mode": "0750"}, "loop": [glance.GLANCE_STAGING, glance.GLANCE_TASKS]},
        *_ini(glance.GLANCE_CONF, src.glance_settings(profile), "glance", f"restart {unit}"),
        *marker_tasks("glance", glance.PACKAGES(src.PLATFORM)[0], "glance-manage db_sync"),
        {"name": "How many metadata definitions the catalogue holds",
         "ansible.builtin.command": "mysql --batch --skip-column-names -e "
                                    "'SELECT COUNT(*) FROM glance.metadef_namespaces'",
         "register": "stack_tui_metadefs", "changed_when": False},
        {"name": "Load the metadata definitions catalogue",
         "ansible.builtin.command": "runuser -u glance -- glance-manage db_load_metadefs",
         "when": "stack_tui_metadefs.stdout | trim == '0'"},
        *service_up(unit),
        {"name": "Glance answers on 9292", "ansible.builtin.uri": {
            "url": "http://127.0.0.1:9292/", "status_code": [200, 300]},
         "register": "stack_tui_gl_up", "until": "stack_tui_gl_up.status in [200, 300]",
         "retries": 60, "delay": 1},
    ]
    files = {}
    if profile.image.upload:
        tasks_img, files = image_tasks(profile)
        tasks += tasks_img
    return role(tasks, handlers=[restart(unit)], files=files)


def image_tasks(profile) -> tuple[list[dict], dict]:
    """The image: the profile's local file, or its URL downloaded once on this machine (as
    the engine does: the host needs no internet), copied to the host, then into Glance."""
    img = profile.image
    tasks: list[dict] = []
    if img.file:
        path = Path(img.file).expanduser()
        local, dest = str(path), f"/var/lib/stack-tui/images/{path.name}"
        md5 = glance.file_md5(path) if path.is_file() else None
    else:
        url = img.source()
        key = hashlib.sha256(url.encode()).hexdigest()[:16]   # the engine's cache name
        local, dest, md5 = "{{ playbook_dir }}/images/" + key, f"/var/lib/stack-tui/images/{key}", None
        here = {"delegate_to": "localhost", "become": False, "run_once": True}
        tasks += [
            {"name": "Directory for the image on this machine", "ansible.builtin.file": {
                "path": "{{ playbook_dir }}/images", "state": "directory", "mode": "0700"},
             **here},
            {"name": "Download the image on this machine (once)", "ansible.builtin.get_url": {
                "url": url, "dest": local, "mode": "0600"}, **here},
        ]
    tasks += [
        {"name": "The image's directory on the host", "ansible.builtin.file": {
            "path": "/var/lib/stack-tui/images", "state": "directory", "mode": "0700"}},
        {"name": "Copy the image to the host", "ansible.builtin.copy": {
            "src": local, "dest": dest, "mode": "0600"}},
        {"name": f"Image {img.name} in Glance", "openstack.cloud.image": {
            "name": img.name, "filename": dest, "disk_format": img.disk_format,
            "container_format": img.container_format, "visibility": img.visibility,
            "tags": ["stack-tui"], **({"checksum": md5} if md5 else {}),
            "state": "present"}, "no_log": True},
    ]
    return tasks, {}


def finish_role(profile) -> dict:
    ctx = src.context(profile)
    files = {"admin-openrc.sh": ("admin", "admin")}
    if profile.openstack.demo:
        files["demo-openrc.sh"] = ("demo", "demo")
    templates = {}
    for name, (user, project) in files.items():
        body = finish.openrc(ctx, user, project, f"[[secret:{user}_password]]")
        marker = shlex.quote(f"[[secret:{user}_password]]")
        templates[name + ".j2"] = body.replace(marker, "{{ %s | quote }}" % var(
            f"{user}_password"))
    tasks = [
        {"name": "The SSH user's home directory", "ansible.builtin.getent": {
            "database": "passwd", "key": "{{ ansible_user }}"}},
        {"name": "openrc files in the user's home (0600)", "ansible.builtin.template": {
            "src": "{{ item }}.j2",
            "dest": "{{ ansible_facts['getent_passwd'][ansible_user][4] }}/{{ item }}",
            "owner": "{{ ansible_user }}", "mode": "0600"}, "loop": list(files),
         "no_log": True},
        {"name": "Verify: a token as admin",
         **{k: v for k, v in token_check("admin", "admin", "stack_tui_v_admin",
                                         expect=(201,)).items() if k != "name"}},
    ]
    if profile.openstack.demo:
        tasks.append({"name": "Verify: a token as demo", **{
            k: v for k, v in token_check("demo", "demo", "stack_tui_v_demo",
                                         expect=(201,)).items() if k != "name"}})
    if "glance" in profile.openstack.services and profile.image.upload:
        url = f"http://{url_host(profile.endpoint_host)}:9292/v2/images?name={profile.image.name}"
        tasks += [
            {"name": f"Verify: image {profile.image.name} is listed and active",
             "ansible.builtin.uri": {"url": url, "headers": {
                 "X-Auth-Token": "{{ stack_tui_v_admin.x_subject_token }}"}},
             "register": "stack_tui_v_images", "no_log": True,
             "failed_when": "stack_tui_v_images.json['images'] | selectattr('status', "
                            "'equalto', 'active') | list | length != 1"},
        ]
    return role(tasks, templates=templates)
