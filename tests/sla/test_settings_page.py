"""Settings, Response targets: Maintainer+ set targets, hours and label targets."""

from __future__ import annotations

import pytest
from django.urls import reverse

from issues.models import Label
from sla.forms import format_duration, parse_duration
from sla.models import LabelTarget, ResponsePolicy

pytestmark = pytest.mark.django_db
FORM = {
    "action": "save", "enabled": "on", "first_response_minutes": "1h 30m",
    "next_response_minutes": "8h", "warn_minutes": "15m", "time_zone": "Europe/Berlin",
    "weekly_hours": "Mon-Fri 09:00-17:00\nSat 10:00-12:00", "holidays": "2026-12-25",
}  # fmt: skip


def url(project) -> str:  # type: ignore[no-untyped-def]
    return reverse("response_targets", args=[project.full_path])


def test_a_maintainer_switches_targets_on(client, project, maintainer) -> None:  # type: ignore[no-untyped-def]
    client.force_login(maintainer)
    page = client.get(url(project))
    assert page.status_code == 200
    assert "Track response targets" in page.content.decode()
    response = client.post(url(project), FORM)
    assert response.status_code == 302
    policy = ResponsePolicy.objects.get(project=project)
    assert (policy.enabled, policy.first_response_minutes, policy.warn_minutes) == (True, 90, 15)
    assert policy.hours.week[5] == ((600, 720),)
    assert "1h 30m" in client.get(url(project)).content.decode()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("weekly_hours", "Mo-Fr 9-17", "days are written Mon, Tue"),
        ("holidays", "25.12.2026", "is not a date like"),
        ("first_response_minutes", "soon", "Write a duration like 4h"),
        ("warn_minutes", "2d", "Write a duration like 4h"),
        ("warn_minutes", "25h", "Between 1 minute and 24h"),
        ("time_zone", "Mars/Olympus", "Select a valid choice"),
    ],
)
def test_mistakes_are_shown_beside_their_field(
    client, project, maintainer, field, value, message
) -> None:  # type: ignore[no-untyped-def]
    client.force_login(maintainer)
    response = client.post(url(project), {**FORM, field: value})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ResponsePolicy.objects.filter(project=project).exists()


def test_label_targets_are_added_and_removed(client, project, maintainer) -> None:  # type: ignore[no-untyped-def]
    client.force_login(maintainer)
    high = Label.objects.create(project=project, title="priority::high")
    response = client.post(
        url(project),
        {
            "action": "label",
            "label": high.pk,
            "first_response_minutes": "1h",
            "next_response_minutes": "2h",
        },
    )
    assert response.status_code == 302
    target = LabelTarget.objects.get(label=high)
    assert (target.first_response_minutes, target.next_response_minutes) == (60, 120)
    assert "~priority::high" in client.get(url(project)).content.decode()
    client.post(url(project), {"action": "remove", "target": target.pk})
    assert not LabelTarget.objects.exists()


def test_another_projects_label_cannot_be_targeted(client, project, maintainer) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import ProjectFactory

    elsewhere = Label.objects.create(project=ProjectFactory(path="other"), title="vip")
    client.force_login(maintainer)
    response = client.post(
        url(project),
        {
            "action": "label",
            "label": elsewhere.pk,
            "first_response_minutes": "1h",
            "next_response_minutes": "2h",
        },
    )
    assert response.status_code == 400
    assert not LabelTarget.objects.exists()


def test_durations_read_and_write_alike() -> None:
    for minutes in (1, 59, 60, 90, 24 * 60, 1441):
        assert parse_duration(format_duration(minutes)) == minutes
    assert [parse_duration(text) for text in ("4h", " 45 ", "2h15m")] == [240, 45, 135]
