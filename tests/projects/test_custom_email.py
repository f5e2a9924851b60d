"""A project's own email address: credentials at rest, the settings page, routing of mail the
provider forwards, the verification's rules, and sending through the project's SMTP server
(a real aiosmtpd server requiring STARTTLS and AUTH). The round trip through Dovecot and the
worker is in test_custom_email_flow.py."""

from __future__ import annotations

from datetime import timedelta
from email.utils import parseaddr

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from issues.models import Issue, Note, OutboundEmail
from issues.outbox import outbound_claim, outbound_send
from mailroom.models import InboundMessage
from projects.custom_email import (
    TOKEN_LINE,
    custom_email_create,
    custom_email_enable,
    custom_email_verification_fail,
)
from projects.models import CustomEmail
from projects.tasks import send_custom_email_verification
from servicedesk import encryption
from tests.factories import ProjectFactory
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
CUSTOM = "support@customer.test"
PASSWORD = "s3cret-Passw0rd"
Error = CustomEmail.Error


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}


@pytest.fixture
def address(project) -> str:  # type: ignore[no-untyped-def]
    return INCOMING.address_for(project.service_desk.default_key)


def create(project, actor, *, port: int = 587, password: str = PASSWORD, **kwargs):  # type: ignore[no-untyped-def]
    values = {
        "address": CUSTOM,
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_username": CUSTOM,
        "smtp_password": password,
        "smtp_authentication": "auto",
        **kwargs,
    }
    return custom_email_create(project=project, actor=actor, **values)


def verified(project, actor, **kwargs) -> CustomEmail:  # type: ignore[no-untyped-def]
    custom = create(project, actor, **kwargs)
    CustomEmail.objects.filter(pk=custom.pk).update(state="verified", verified_at=timezone.now())
    return custom_email_enable(project=project, enabled=True)


# --- Credentials at rest ----------------------------------------------------------------------


def test_credentials_are_stored_encrypted_and_decrypt(project, maintainer) -> None:
    custom = create(project, maintainer)
    stored = CustomEmail.objects.get(pk=custom.pk)
    assert PASSWORD not in stored.smtp_password_encrypted
    assert CUSTOM not in stored.smtp_username_encrypted
    assert encryption.decrypt(stored.smtp_password_encrypted) == PASSWORD


def test_rotation_re_encrypts_with_the_newest_key_and_old_keys_can_go(
    project, maintainer, settings
) -> None:
    old, new = encryption.generate_key(), encryption.generate_key()
    settings.SERVICEDESK_ENCRYPTION_KEYS = [old]
    custom = create(project, maintainer)
    settings.SERVICEDESK_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_keys")
    settings.SERVICEDESK_ENCRYPTION_KEYS = [new]
    stored = CustomEmail.objects.get(pk=custom.pk)
    opened = Fernet(new.encode()).decrypt(stored.smtp_password_encrypted.encode())
    assert opened == PASSWORD.encode()


def test_rotation_refuses_when_no_key_opens_the_credentials(project, maintainer, settings) -> None:
    settings.SERVICEDESK_ENCRYPTION_KEYS = [encryption.generate_key()]
    create(project, maintainer)
    settings.SERVICEDESK_ENCRYPTION_KEYS = [encryption.generate_key()]
    settings.SECRET_KEY = "another-secret-key-than-the-one-used-before-0123456789"
    with pytest.raises(CommandError, match="add back the key"):
        call_command("rotate_encryption_keys")


def test_a_malformed_key_fails_loudly_without_showing_it(settings) -> None:
    settings.SERVICEDESK_ENCRYPTION_KEYS = ["not-a-fernet-key-at-all"]
    with pytest.raises(ImproperlyConfigured) as raised:
        encryption.encrypt("x")
    assert "not-a-fernet-key" not in str(raised.value)


# --- The settings page --------------------------------------------------------------------------


def page(project) -> str:  # type: ignore[no-untyped-def]
    return reverse("service_desk_custom_email", args=[project.full_path])


def form_data(**overrides: str) -> dict[str, str]:
    return {"address": CUSTOM, "smtp_host": "smtp.customer.test", "smtp_port": "587",
            "smtp_username": CUSTOM, "smtp_password": PASSWORD, "smtp_authentication": "login",
            **overrides}  # fmt: skip


def test_saving_starts_the_verification_and_the_password_is_never_shown(
    client, project, maintainer
) -> None:
    client.force_login(maintainer)
    response = client.post(page(project), form_data(), follow=True)
    assert response.status_code == 200
    custom = CustomEmail.objects.get(project=project)
    assert (custom.state, custom.triggered_by, len(custom.token)) == ("started", maintainer, 12)
    body = response.content.decode()
    assert PASSWORD not in body
    assert custom.token not in body
    assert 'data-state="started"' in body
    assert 'hx-trigger="every 3s"' in body
    # The fragment htmx polls: the same section, still polling while verifying.
    fragment = client.get(page(project), headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith("{#") is False
    assert "<html" not in fragment
    assert 'data-state="started"' in fragment


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"smtp_password": "short"}, "smtp_password"), ({"smtp_password": "x" * 129}, "smtp_password"),
     ({"address": "support+x@customer.test"}, "address"), ({"smtp_authentication": "ntlm"},
     "smtp_authentication")],
)  # fmt: skip
def test_invalid_form_is_refused_and_keeps_no_password(
    client, project, maintainer, overrides, field
) -> None:
    client.force_login(maintainer)
    response = client.post(page(project), form_data(**overrides))
    assert response.status_code == 400
    assert not CustomEmail.objects.filter(project=project).exists()
    assert overrides.get("smtp_password", PASSWORD) not in response.content.decode()


def test_an_address_is_unique_per_instance(project, maintainer) -> None:
    create(project, maintainer)
    other = ProjectFactory(path="other", service_desk_enabled=True)
    with pytest.raises(ValidationError, match="Another project"):
        create(other, maintainer, address="Support@Customer.test")


def test_failed_state_says_what_to_fix_and_reset_deletes_the_credentials(
    client, project, maintainer
) -> None:
    custom = create(project, maintainer)
    custom_email_verification_fail(custom_id=custom.pk, token=custom.token, error="incorrect_from")
    client.force_login(maintainer)
    body = client.get(page(project)).content.decode()
    assert "incorrect_from" in body
    assert "without rewriting the sender" in body
    assert 'hx-trigger="every 3s"' not in body
    client.post(reverse("service_desk_custom_email_reset", args=[project.full_path]))
    assert not CustomEmail.objects.filter(project=project).exists()


def test_only_a_verified_address_can_be_turned_on(client, project, maintainer) -> None:
    create(project, maintainer)
    client.force_login(maintainer)
    url = reverse("service_desk_custom_email_enable", args=[project.full_path])
    client.post(url, {"enabled": "on"})
    assert CustomEmail.objects.get(project=project).enabled is False
    CustomEmail.objects.filter(project=project).update(state="verified")
    client.post(url, {"enabled": "on"})
    assert CustomEmail.objects.get(project=project).enabled is True


# --- The verification's rules, in order -----------------------------------------------------------


def verification_email(custom: CustomEmail, *, sender: str = CUSTOM, token: str = "") -> bytes:
    return make_email(
        to=custom.verification_address,
        sender=f"Support <{sender}>",
        subject="Verify the custom email address",
        body=f"{TOKEN_LINE} {token or custom.token}\n",
    )


def deliver_to(raw: bytes, address: str) -> InboundMessage:
    return deliver(f"Delivered-To: {address}\r\n".encode() + raw)


@pytest.mark.parametrize(
    ("case", "expected"),
    [("as sent", "verified"), ("late", Error.MAIL_NOT_RECEIVED),
     ("to the alias", Error.INCORRECT_FORWARDING_TARGET),
     ("to another project", Error.INCORRECT_FORWARDING_TARGET),
     ("From rewritten", Error.INCORRECT_FROM), ("token changed", Error.INCORRECT_TOKEN),
     ("late and From rewritten", Error.MAIL_NOT_RECEIVED)],
)  # fmt: skip
def test_verification_email_checks_in_order(project, owner, maintainer, address, case, expected):  # type: ignore[no-untyped-def]
    custom = create(project, maintainer)
    target = address
    raw = verification_email(custom)
    if "late" in case:
        CustomEmail.objects.filter(pk=custom.pk).update(
            triggered_at=timezone.now() - timedelta(minutes=31)
        )
    if case == "to the alias":
        target = ALIAS.address_for(project.service_desk.default_key)
    if case == "to another project":
        other = ProjectFactory(path="other", service_desk_enabled=True)
        target = INCOMING.address_for(other.service_desk.default_key)
    if "From rewritten" in case:
        raw = verification_email(custom, sender="forwarder@customer.test")
    if case == "token changed":
        raw = verification_email(custom, token="X" * 12)
    row = deliver_to(raw, target)
    custom.refresh_from_db()
    assert (custom.state, custom.error or "verified") == (
        ("verified", "verified") if expected == "verified" else ("failed", expected)
    )
    # Never an issue, never a thank-you holding the token; Owner and starter are told.
    assert row.outcome == InboundMessage.Outcome.IGNORED, row.reason
    assert row.reason == f"custom email verification: {expected}"
    assert not Issue.objects.exists()
    told = OutboundEmail.objects.filter(kind="team").values_list("recipient", flat=True)
    assert sorted(told) == sorted([owner.email, maintainer.email])
    assert not any(custom.token in e.body_text for e in OutboundEmail.objects.all())


def test_the_result_email_is_in_each_recipients_language(project, owner, maintainer) -> None:
    owner.language = "de"
    owner.save(update_fields=["language"])
    custom = create(project, maintainer)
    assert custom_email_verification_fail(
        custom_id=custom.pk, token=custom.token, error=Error.INVALID_CREDENTIALS
    )
    told = {e.recipient: e for e in OutboundEmail.objects.filter(kind="team")}
    german, english = told[owner.email], told[maintainer.email]
    assert german.subject == f"[{project.full_path}] Bestätigung von {CUSTOM} fehlgeschlagen"
    assert "Ungültige Zugangsdaten" in german.body_text
    assert "Einstellungsseite" in german.body_text
    assert english.subject == f"[{project.full_path}] Verification of {CUSTOM} failed"
    assert "Invalid credentials" in english.body_text
    assert "The SMTP server refused the username and password." in english.body_text


def test_verification_email_after_reset_is_never_an_issue(project, maintainer, address) -> None:
    custom = create(project, maintainer)
    raw = verification_email(custom)
    custom_email_verification_fail(custom_id=custom.pk, token=custom.token, error="read_timeout")
    row = deliver_to(raw, address)
    assert row.reason == "custom email verification: not verifying"
    assert not Issue.objects.exists()


# --- Mail the provider forwards ------------------------------------------------------------------


def test_new_email_to_the_custom_address_routes_by_to_without_any_key(project, maintainer) -> None:
    verified(project, maintainer)
    row = deliver(make_email(to=f"ACME Support <{CUSTOM}>"))  # no Delivered-To, no key at all
    assert row.outcome == InboundMessage.Outcome.ISSUE_CREATED, row.reason
    assert row.project_id == project.pk


def test_unverified_custom_address_routes_nowhere(project, maintainer) -> None:
    create(project, maintainer)
    row = deliver(make_email(to=CUSTOM))
    assert row.outcome == InboundMessage.Outcome.REJECTED


def test_thank_you_comes_from_the_custom_address_and_the_reply_routes_back(
    project, maintainer, address
) -> None:
    verified(project, maintainer)
    project.service_desk.outgoing_name = "ACME Support"
    project.service_desk.save()
    row = deliver(make_email(to=CUSTOM, headers={"Delivered-To": address}))
    thank_you = OutboundEmail.objects.get(kind="thank_you")
    assert thank_you.from_email == f"ACME Support <{CUSTOM}>"
    reply_to = thank_you.headers["Reply-To"]
    key = thank_you.sent_notification.reply_key
    assert reply_to == f"support+{key}@customer.test"
    # The customer answers to Reply-To; the provider forwards it (no References kept).
    reply = deliver(make_email(to=reply_to, subject="Re: Help please", body="Still broken."))
    assert reply.outcome == InboundMessage.Outcome.NOTE_ADDED, reply.reason
    assert Note.objects.get(pk=reply.note_id).issue_id == row.issue_id


# --- Sending through the project's SMTP server ---------------------------------------------------


def send_all() -> dict[int, str]:
    ids = list(OutboundEmail.objects.filter(status="pending").values_list("pk", flat=True))
    claimed, token = outbound_claim(ids)
    return outbound_send(claimed, token)


def test_emails_go_through_the_projects_server_over_starttls_with_auth(
    project, maintainer, submission_server, smtp
) -> None:
    verified(project, maintainer, port=submission_server.port, smtp_authentication="login")
    deliver(make_email(to=CUSTOM))
    assert set(send_all().values()) == {"sent"}
    mail = submission_server.wait_for(1)[0]
    assert parseaddr(mail.message["From"])[1] == CUSTOM
    assert mail.recipients == ["jake@customer.example"]
    assert submission_server.logins == [("LOGIN", CUSTOM)]
    assert smtp.messages == []  # not through the instance's server
    assert CustomEmail.objects.get(project=project).last_sent_at is not None


def test_a_failing_custom_server_backs_off_and_shows_on_the_settings_page(
    client, project, maintainer, submission_server
) -> None:
    verified(project, maintainer, port=submission_server.port, password="wrong-password")
    deliver(make_email(to=CUSTOM))
    assert set(send_all().values()) == {"failed"}  # 535: a permanent refusal
    submission_server.stop()
    OutboundEmail.objects.update(status="pending", attempts=0)
    assert set(send_all().values()) == {"pending"}  # unreachable: retried
    email = OutboundEmail.objects.get()
    assert email.next_attempt_at is not None
    assert email.next_attempt_at > timezone.now()
    custom = CustomEmail.objects.get(project=project)
    assert "wrong-password" not in custom.last_send_error + email.last_error
    client.force_login(maintainer)
    body = client.get(page(project)).content.decode()
    assert "Your SMTP server failed to send" in body
    assert "ConnectionRefusedError" in body


@pytest.mark.parametrize("mechanism", ["plain", "login", "cram-md5", "auto"])
def test_verification_email_is_sent_with_the_chosen_mechanism(
    project, maintainer, submission_server, mechanism
) -> None:
    custom = create(project, maintainer, port=submission_server.port,
                    smtp_authentication=mechanism)  # fmt: skip
    send_custom_email_verification(custom.pk, custom.token)
    mail = submission_server.wait_for(1)[0]
    assert mail.recipients == ["support+verify@customer.test"]
    assert f"{TOKEN_LINE} {custom.token}" in mail.message.get_content()
    used = submission_server.logins[0][0]
    # smtplib's own choice prefers CRAM-MD5, which never sends the password.
    assert used == ("CRAM-MD5" if mechanism == "auto" else mechanism.upper())
    assert CustomEmail.objects.get(pk=custom.pk).state == "started"


def test_smtp_failures_at_the_start_name_their_reason(
    project, maintainer, submission_server, silent_server, settings
) -> None:
    settings.SERVICEDESK_CUSTOM_SMTP_TIMEOUT = 1
    cases = [
        ({"port": submission_server.port, "password": "wrong-password"}, "invalid_credentials"),
        ({"port": silent_server.port}, "read_timeout"),
        ({"port": submission_server.port, "smtp_host": "localhost.invalid"}, "smtp_host_issue"),
    ]
    for overrides, reason in cases:
        CustomEmail.objects.all().delete()
        custom = create(project, maintainer, **overrides)
        send_custom_email_verification(custom.pk, custom.token)
        custom.refresh_from_db()
        assert (custom.state, custom.error) == ("failed", reason)


def test_system_check_names_a_bad_key_and_warns_production_without_keys(settings) -> None:
    from projects.checks import encryption_keys

    settings.SERVICEDESK_ENCRYPTION_KEYS = ["nope"]
    assert [m.id for m in encryption_keys()] == ["projects.E001"]
    settings.SERVICEDESK_ENCRYPTION_KEYS = []
    settings.PRODUCTION = True
    assert [m.id for m in encryption_keys()] == ["projects.W001"]
    settings.SERVICEDESK_ENCRYPTION_KEYS = [encryption.generate_key()]
    assert encryption_keys() == []


def test_a_projects_own_address_in_cc_is_never_a_participant(project, maintainer, address) -> None:
    from issues.models import EmailParticipant

    verified(project, maintainer)
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    raw = make_email(to=address, headers={"Cc": f"Boss <boss@customer.example>, {CUSTOM}"})
    row = deliver(raw)
    emails = set(
        EmailParticipant.objects.filter(issue_id=row.issue_id).values_list("email", flat=True)
    )
    assert emails == {"jake@customer.example", "boss@customer.example"}


def test_the_team_cannot_add_a_projects_own_address_as_participant(project, maintainer) -> None:
    from issues.services import issue_participant_add
    from tests.factories import IssueFactory

    create(project, maintainer)
    issue = IssueFactory(project=project, author=maintainer)
    for address in (CUSTOM, "Support+abc@customer.test"):
        with pytest.raises(ValidationError, match="own addresses"):
            issue_participant_add(issue=issue, user=maintainer, email=address)
