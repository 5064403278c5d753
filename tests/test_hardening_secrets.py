"""Hardening: secrets of every length are masked by value, the support bundle also masks by
key name, and terminal escape sequences from the host never reach the screen or the log."""

from __future__ import annotations

import tarfile

import pytest

from tui.tasks import engine as e
from tui.tasks import profile as pr
from tui.tasks.bundle import make_bundle, scrub
from tui.tasks.redact import MASK, Redactor, strip_controls
from tui.tasks.secrets import write_secrets_file


@pytest.fixture(autouse=True)
def home(isolated_home):
    return isolated_home


# --------------------------------------------------------------------------- short secrets


@pytest.mark.parametrize("secret", ["x", "ab", "$", "'", "@b"])
@pytest.mark.parametrize("template", [
    "admin_password = {s}", "admin_password={s}", "password: '{s}'", 'password: "{s}"',
    "export OS_PASSWORD='{s}'", '{{"password": "{s}"}}', "--os-password {s}",
    "mysql+pymysql://keystone:{u}@10.0.0.1/keystone", "transport_url = rabbit://openstack:{u}@h:5672/",
    "sudo_password = {s}\nnext line",
])
def test_secrets_of_every_length_are_masked_where_they_stand_as_values(secret, template):
    import urllib.parse

    red = Redactor([secret])
    text = template.format(s=secret, u=urllib.parse.quote(secret, safe=""))
    want = template.format(s=MASK, u=MASK)
    # a shell-quoted form ('$') is masked with its quotes
    assert red(text) in (want, want.replace(f"'{MASK}'", MASK))


def test_short_secrets_do_not_mask_ordinary_words():
    red = Redactor(["x", "ab", "1"])
    text = "[ 1/40] about xylophone a x b tab; attempt: 1"
    assert red(text) == text


def test_a_one_character_secret_keeps_the_run_state_loadable(tmp_path):
    from tui.tasks.engine import RunState, Status

    st = RunState(tmp_path / "state.json", Redactor(["1", "x"]))
    st.facts["answer"] = "1"
    st.set("s", Status.DONE, 1.0)
    again = RunState.load(tmp_path / "state.json")
    assert again.status("s") == Status.DONE and again.facts["answer"] == MASK


# --------------------------------------------------------------------------- bundle key names

LEAKY = {
    "hmac_keys = HMACSECRETVALUE": "HMACSECRETVALUE",
    "memcache_secret_key = MEMCACHEKEYVALUE": "MEMCACHEKEYVALUE",
    "encryption_key = ENCRYPTIONKEYVALUE": "ENCRYPTIONKEYVALUE",
    "backup_password_hash = HASHEDPWVALUE": "HASHEDPWVALUE",
    "X-Auth-Token: gAAAAAAuthTokenValue": "gAAAAAAuthTokenValue",
    'REQ: curl -H "X-Auth-Token: gAAAAAcurlToken" -H "X-Subject-Token: gAAAAAsubjToken"':
        "gAAAAAcurlToken",
    "{'X-Subject-Token': 'gAAAAAdictToken', 'Vary': 'X-Auth-Token'}": "gAAAAAdictToken",
    "RESP: [201] X-Subject-Token: gAAAAArespToken Content-Type: application/json":
        "gAAAAArespToken",
    "transport_url = rabbit://openstack:rab bit@pw@10.0.0.1:5672/": "rab bit@pw",
    'connection = "mysql+pymysql://glance:p@ss w0rd @10.0.0.1/glance?charset=utf8mb4"':
        "p@ss w0rd ",
    "connection = mysql+pymysql://keystone:Plain1Pw@10.0.0.1/keystone": "Plain1Pw",
}


@pytest.mark.parametrize("line,secret", list(LEAKY.items()))
def test_scrub_masks_by_key_name_and_url_shape(line, secret):
    out = scrub(line)
    assert secret not in out and MASK in out, out
    for part in (secret.split() if " " in secret else []):
        if len(part) > 3:
            assert part not in out, out


def test_scrub_keeps_what_is_not_secret():
    text = ("credential_key_repository = /etc/keystone/credential-keys/\n"
            "Vary: X-Auth-Token\nprovider = fernet\n")
    assert scrub(text) == text


def test_bundle_leaks_nothing_short_or_by_key_name(tmp_path):
    p = pr.Profile(name="leak", host=pr.HostConfig(address="10.0.0.5"))
    p.openstack.services = ["mariadb"]
    pr.save(p)
    write_secrets_file(p.secrets_file, {"rabbit_password": "rb", "sudo_password": "s"})
    log = e.new_log_path("leak")
    body = "\n".join(LEAKY) + "\nsudo: password = s\nrabbit://openstack:rb@10.0.0.5:5672/\n"
    log.write_text(body)
    out = make_bundle(p, tmp_path / "b.tar.gz", connect=False)
    with tarfile.open(out) as tar:
        member = next(m for m in tar.getmembers() if "/local/logs/" in m.name)
        text = tar.extractfile(member).read().decode()
    for secret in LEAKY.values():
        assert secret not in text, secret
    assert "password = s\n" not in text and "openstack:rb@" not in text
    assert "password = " + MASK in text and "openstack:" + MASK + "@" in text


# --------------------------------------------------------------------------- escape sequences

HOSTILE = ("ok \x1b[2J\x1b[H\x1b]0;pwned\x07\x1b[31mred\x1b[0m \x1bP+q\x1b\\ \x9b1;1H "
           "\x08\x08\x7f\u202eevil\r\x00done")


def test_strip_controls_removes_sequences_and_keeps_text():
    out = strip_controls(HOSTILE)
    assert out == "ok red   evildone", repr(out)
    assert strip_controls("a\tb\nc ü ☃") == "a\tb\nc ü ☃"


def test_remote_output_and_errors_reach_events_and_transcript_stripped(tmp_path):
    def step(ctx):
        ctx.output("line " + HOSTILE)
        ctx.progress(1, 2, "img \x1b[31mname")
        raise e.StepError("failed \x1b]0;t\x07", "why \x1b[1m", "hint \x07",
                          tail=["tail \x1b[2K\x1b[1A"])

    events: list = []
    state = e.RunState(tmp_path / "state.json")
    ctx = e.Context(None, pr.Profile(name="x"), {}, Redactor(), state)
    plan = e.Plan([e.Phase("p", "P", [e.Step("s", "S", run=step)])])
    tr = e.Transcript(tmp_path / "t.log", Redactor())
    e.Engine(plan, ctx, listeners=[events.append, tr]).run()
    tr.close()
    texts = []
    for ev in events:
        if isinstance(ev, e.StepOutput):
            texts.append(ev.line)
        elif isinstance(ev, e.StepProgress):
            texts.append(ev.text)
        elif isinstance(ev, e.StepFinished) and ev.error:
            texts += [ev.error.text(), *ev.error.tail]
    texts.append((tmp_path / "t.log").read_text())
    assert len(texts) >= 5
    for t in texts:
        assert not any(c in t for c in "\x1b\x07\x08\x9b\x7f\x00\r\u202e"), repr(t)


@pytest.mark.parametrize("char", ["%", "@"])
def test_a_database_password_with_percent_or_at_is_refused_naming_it(char):
    """'%40' (an '@' in the database URL) broke keystone-manage db_sync on a real host, as '%'
    does: Keystone's schema migrations read the URL through configparser."""
    from tui.tasks import secrets

    why = secrets.validate("keystone_db_password", f"pa{char}ss")
    assert why is not None and why.startswith("keystone_db_password contains ") and char in why
    assert secrets.validate("admin_password", f"pa{char}ss") is None   # not a database's
