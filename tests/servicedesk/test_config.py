"""The settings helpers and the TOML mailbox configuration fail loudly, naming what is wrong."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from servicedesk.config import load_mailboxes
from servicedesk.env import env_bool, env_int, env_list, env_secret, env_str

GOOD = """
[incoming_email]
enabled = true
address = "incoming+%{key}@example.com"
user = "incoming@example.com"
password = "s3cret"
host = "imap.example.com"
ssl = true

[service_desk_email]
enabled = true
address = "contact+%{key}@example.com"
user = "contact@example.com"
password_file = "PASSWORD_FILE"
host = "imap.example.com"
start_tls = true
idle_timeout = 30
expunge_deleted = true
"""


def write(tmp_path, text: str) -> str:
    path = tmp_path / "servicedesk.toml"
    path.write_text(text)
    return str(path)


def test_env_helpers_name_the_missing_or_bad_variable(monkeypatch) -> None:
    monkeypatch.delenv("SD_TEST_VALUE", raising=False)
    with pytest.raises(ImproperlyConfigured, match="SD_TEST_VALUE"):
        env_str("SD_TEST_VALUE")
    assert env_str("SD_TEST_VALUE", "fallback") == "fallback"
    monkeypatch.setenv("SD_TEST_VALUE", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SD_TEST_VALUE must be a boolean"):
        env_bool("SD_TEST_VALUE")
    with pytest.raises(ImproperlyConfigured, match="SD_TEST_VALUE must be an integer"):
        env_int("SD_TEST_VALUE")
    monkeypatch.setenv("SD_TEST_VALUE", " a, b ,,c ")
    assert env_list("SD_TEST_VALUE") == ["a", "b", "c"]


def test_env_secret_reads_the_file_variant(monkeypatch, tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("SD_TEST_SECRET_FILE", str(secret))
    assert env_secret("SD_TEST_SECRET") == "from-a-file"
    monkeypatch.setenv("SD_TEST_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="SD_TEST_SECRET_FILE"):
        env_secret("SD_TEST_SECRET")


def test_valid_config_is_parsed_with_defaults(tmp_path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    path = write(tmp_path, GOOD.replace("PASSWORD_FILE", str(tmp_path / "pw")))
    boxes = load_mailboxes(path, environ={})
    incoming, alias = boxes["incoming_email"], boxes["service_desk_email"]
    assert incoming.port == 993
    assert incoming.mailbox == "inbox"
    assert incoming.idle_timeout == 60
    assert incoming.expunge_deleted is False
    assert alias.port == 143
    assert alias.password == "from-file"
    assert alias.expunge_deleted is True
    assert "s3cret" not in repr(incoming)
    assert incoming.address_for("acme-game-7-issue-") == "incoming+acme-game-7-issue-@example.com"
    match = incoming.address_regex.match("<INCOMING+acme-game-7-issue-@Example.com>")
    assert match is not None
    assert match["key"] == "acme-game-7-issue-"


def test_environment_overrides_the_file(tmp_path) -> None:
    (tmp_path / "pw").write_text("x")
    path = write(tmp_path, GOOD.replace("PASSWORD_FILE", str(tmp_path / "pw")))
    boxes = load_mailboxes(
        path,
        environ={
            "SERVICEDESK_INCOMING_EMAIL_PASSWORD": "from-env",
            "SERVICEDESK_INCOMING_EMAIL_PORT": "1993",
        },
    )
    assert boxes["incoming_email"].password == "from-env"
    assert boxes["incoming_email"].port == 1993


def test_config_from_environment_alone() -> None:
    boxes = load_mailboxes(
        None,
        environ={
            "SERVICEDESK_INCOMING_EMAIL_ENABLED": "true",
            "SERVICEDESK_INCOMING_EMAIL_ADDRESS": "in-%{key}@example.com",
            "SERVICEDESK_INCOMING_EMAIL_HOST": "127.0.0.1",
            "SERVICEDESK_INCOMING_EMAIL_USER": "in",
            "SERVICEDESK_INCOMING_EMAIL_PASSWORD": "pw",
        },
    )
    assert boxes["incoming_email"].enabled


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("ssl = true", 'ssl = "sometimes"'), r"\[incoming_email\] ssl: must be true or false"),
        (("ssl = true", "ssl = true\nport = 70000"), r"\[incoming_email\] port: must be between"),
        (("ssl = true", "ssl = true\nport = true"), r"\[incoming_email\] port: must be an integer"),
        (("ssl = true", "ssl = true\nstart_tls = true"), r"\[incoming_email\] start_tls"),
        (("ssl = true", "ssl = true\nmailbx = 'x'"), r"\[incoming_email\] mailbx: unknown key"),
        (('"incoming+%{key}@example.com"', '"incoming@example.com"'), r"address: must be"),
        (('host = "imap.example.com"\nssl', "ssl"), r"\[incoming_email\] host: required"),
        (("ssl = true", 'ssl = true\ninbox_method = "pop3"'), r"inbox_method: must be one of"),
        (("ssl = true", "ssl = true\nidle_timeout = 0"), r"idle_timeout: must be at least"),
        (('"contact+%{key}', '"incoming+%{key}'), r"service_desk_email\] address: must differ"),
        (
            ("[service_desk_email]", "[servicedesk_email]"),
            r"\[servicedesk_email\]: unknown section",
        ),
    ],
)
def test_bad_config_names_the_key(tmp_path, change, message) -> None:
    (tmp_path / "pw").write_text("x")
    text = GOOD.replace("PASSWORD_FILE", str(tmp_path / "pw")).replace(*change, 1)
    with pytest.raises(ImproperlyConfigured, match=message):
        load_mailboxes(write(tmp_path, text), environ={})


def test_same_imap_mailbox_twice_is_refused(tmp_path) -> None:
    text = GOOD.replace('"contact@example.com"', '"incoming@example.com"').replace(
        'password_file = "PASSWORD_FILE"', 'password = "x"'
    )
    text = text.replace("start_tls = true", "ssl = true")
    with pytest.raises(ImproperlyConfigured, match="must be a different mailbox"):
        load_mailboxes(write(tmp_path, text), environ={})


def test_microsoft_graph_requires_its_credentials(tmp_path) -> None:
    text = """
[incoming_email]
enabled = true
address = "incoming+%{key}@example.com"
inbox_method = "microsoft_graph"
user = "support@example.com"
[incoming_email.inbox_options]
tenant_id = "t"
client_id = "c"
"""
    with pytest.raises(ImproperlyConfigured, match=r"inbox_options.client_secret: required"):
        load_mailboxes(write(tmp_path, text), environ={})
    boxes = load_mailboxes(
        write(tmp_path, text),
        environ={"SERVICEDESK_INCOMING_EMAIL_INBOX_OPTIONS_CLIENT_SECRET": "cs"},
    )
    assert boxes["incoming_email"].graph is not None
    assert boxes["incoming_email"].graph.poll_interval == 60


GRAPH = """
[incoming_email]
enabled = true
address = "incoming+%{key}@example.com"
inbox_method = "microsoft_graph"
user = "support@example.com"
[incoming_email.inbox_options]
tenant_id = "t"
client_id = "c"
client_secret_file = "SECRET_FILE"
"""


def test_microsoft_graph_reads_its_secret_from_a_file_and_defaults_to_microsoft(tmp_path) -> None:
    (tmp_path / "secret").write_text("s3cret-from-file\n")
    text = GRAPH.replace("SECRET_FILE", str(tmp_path / "secret"))
    graph = load_mailboxes(write(tmp_path, text), environ={})["incoming_email"].graph
    assert graph is not None
    assert graph.client_secret == "s3cret-from-file"
    assert graph.azure_ad_endpoint == "https://login.microsoftonline.com"
    assert graph.graph_endpoint == "https://graph.microsoft.com"
    assert "s3cret" not in repr(graph)


@pytest.mark.parametrize(
    ("endpoint", "accepted"),
    [
        ("https://graph.microsoft.us", "https://graph.microsoft.us"),
        ("https://graph.microsoft.us/", "https://graph.microsoft.us"),  # a trailing slash
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),  # this machine only
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://graph.example.com", None),  # the token would cross the network in clear
        ("http://127.0.0.1.evil.example", None),
        ("https://graph.microsoft.com/v1.0", None),  # an origin, not a path
        ("https://user:pw@graph.microsoft.com", None),
        ("ftp://graph.microsoft.com", None),
        ("graph.microsoft.com", None),
    ],
)
def test_graph_endpoints_are_https_origins(tmp_path, endpoint, accepted) -> None:
    (tmp_path / "secret").write_text("s")
    text = GRAPH.replace("SECRET_FILE", str(tmp_path / "secret"))
    environ = {
        "SERVICEDESK_INCOMING_EMAIL_INBOX_OPTIONS_GRAPH_ENDPOINT": endpoint,
        "SERVICEDESK_INCOMING_EMAIL_INBOX_OPTIONS_AZURE_AD_ENDPOINT": endpoint,
    }
    if accepted is None:
        with pytest.raises(ImproperlyConfigured, match=r"inbox_options.azure_ad_endpoint: must"):
            load_mailboxes(write(tmp_path, text), environ=environ)
        return
    graph = load_mailboxes(write(tmp_path, text), environ=environ)["incoming_email"].graph
    assert graph is not None
    assert (graph.graph_endpoint, graph.azure_ad_endpoint) == (accepted, accepted)


def test_microsoft_graph_needs_the_mailbox_user(tmp_path) -> None:
    (tmp_path / "secret").write_text("s")
    text = GRAPH.replace("SECRET_FILE", str(tmp_path / "secret"))
    text = text.replace('user = "support@example.com"\n', "")
    with pytest.raises(ImproperlyConfigured, match=r"\[incoming_email\] user: required"):
        load_mailboxes(write(tmp_path, text), environ={})


def test_same_graph_mailbox_twice_is_refused(tmp_path) -> None:
    (tmp_path / "secret").write_text("s")
    one = GRAPH.replace("SECRET_FILE", str(tmp_path / "secret"))
    two = one.replace("incoming_email", "service_desk_email").replace("incoming+", "contact+")
    with pytest.raises(ImproperlyConfigured, match="must be a different mailbox"):
        load_mailboxes(write(tmp_path, one + two), environ={})
    other = two.replace('user = "support@example.com"', 'user = "contact@example.com"')
    assert len(load_mailboxes(write(tmp_path, one + other), environ={})) == 2


def test_missing_or_broken_file_is_reported(tmp_path) -> None:
    with pytest.raises(ImproperlyConfigured, match="does not exist"):
        load_mailboxes(str(tmp_path / "nope.toml"), environ={})
    with pytest.raises(ImproperlyConfigured, match="not valid TOML"):
        load_mailboxes(write(tmp_path, "[incoming_email\n"), environ={})
