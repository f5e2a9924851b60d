"""The Ticket Trick: anyone who can email a project's address may sign up for another service
with it and read the verification email back. Defences: the thank-you never echoes what was
sent, and "regenerate address" retires a leaked address (after a grace period)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from issues.models import OutboundEmail
from projects.models import ServiceDeskSetting
from projects.services import service_desk_address_regenerate
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
VERIFICATION = (
    "Welcome to Slack! Your confirmation code is 493-112.\n"
    "Or click https://slack.example/confirm?token=s3cr3t-t0k3n to join the workspace."
)


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"


def test_the_thank_you_never_hands_the_secret_to_the_sender(project) -> None:
    to = INCOMING.address_for(project.service_desk.default_key)
    row = deliver(make_email(to=to, subject="Confirm your email", body=VERIFICATION,
                             sender="Slack <feedback@slack.example>"))  # fmt: skip
    assert row.outcome == "issue_created"
    [email] = OutboundEmail.objects.exclude(kind="team").all()
    everything = email.subject + email.body_text + email.body_html + str(email.headers)
    for secret in ("493-112", "s3cr3t-t0k3n", "confirmation code"):
        assert secret not in everything


def test_regenerated_address_retires_the_old_one_after_the_grace_period(project, settings) -> None:
    settings.SERVICEDESK_ADDRESS_GRACE_HOURS = 24
    old = INCOMING.address_for(project.service_desk.default_key)
    setting = service_desk_address_regenerate(project=project)
    new = INCOMING.address_for(setting.default_key)
    assert new != old
    assert deliver(make_email(to=new, message_id="<n1@c.example>")).outcome == "issue_created"
    # Within the grace period mail already on its way still arrives...
    assert deliver(make_email(to=old, message_id="<o1@c.example>")).outcome == "issue_created"
    # ...after it, the old address is unknown.
    ServiceDeskSetting.objects.filter(project=project).update(
        previous_address_expires_at=timezone.now() - timedelta(seconds=1)
    )
    late = deliver(make_email(to=old, message_id="<o2@c.example>"))
    assert (late.outcome, late.reason) == ("rejected", "project not found")
    assert deliver(make_email(to=new, message_id="<n2@c.example>")).outcome == "issue_created"


def test_without_grace_the_old_address_stops_at_once(project, settings) -> None:
    settings.SERVICEDESK_ADDRESS_GRACE_HOURS = 0
    old = INCOMING.address_for(project.service_desk.default_key)
    service_desk_address_regenerate(project=project)
    assert deliver(make_email(to=old)).outcome == "rejected"


def test_regenerating_twice_ends_the_first_address_at_once(project, settings) -> None:
    settings.SERVICEDESK_ADDRESS_GRACE_HOURS = 24
    first = INCOMING.address_for(project.service_desk.default_key)
    second = INCOMING.address_for(service_desk_address_regenerate(project=project).default_key)
    third = INCOMING.address_for(service_desk_address_regenerate(project=project).default_key)
    assert deliver(make_email(to=first, message_id="<a@c.example>")).outcome == "rejected"
    assert deliver(make_email(to=second, message_id="<b@c.example>")).outcome == "issue_created"
    assert deliver(make_email(to=third, message_id="<c@c.example>")).outcome == "issue_created"


def test_regenerating_also_retires_the_guessable_legacy_address(project, settings) -> None:
    legacy = INCOMING.address_for(project.full_path)
    assert deliver(make_email(to=legacy, message_id="<l1@c.example>")).outcome == "issue_created"
    service_desk_address_regenerate(project=project)
    late = deliver(make_email(to=legacy, message_id="<l2@c.example>"))
    assert (late.outcome, late.reason) == ("rejected", "project not found")
