"""full_path is the model's own rule (whoever saves: services, the Django admin, a shell);
renames and moves carry everything below along, and old addresses keep working: web pages
redirect, Service Desk emails keep routing."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from issues.models import Issue
from projects.models import Group, Project, RedirectRoute, Role, ServiceDeskSetting
from projects.services import (
    group_create,
    group_path_change,
    membership_set,
    project_create,
    project_path_change,
)
from tests.factories import UserFactory
from tests.mailroom.helpers import deliver, make_email

pytestmark = pytest.mark.django_db


def test_a_group_and_project_created_in_the_django_admin_leave_the_home_page_working(
    client,
) -> None:
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    response = client.post(
        reverse("admin:projects_group_add"),
        {
            "path": "acme",
            "name": "Acme",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    group = Group.objects.get(path="acme")
    assert group.full_path == "acme"
    project_form = {
        "group": group.pk,
        "path": "game",
        "name": "Game",
        "visibility": "private",
        "description": "",
        "service_desk-TOTAL_FORMS": "1",
        "service_desk-INITIAL_FORMS": "0",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    response = client.post(reverse("admin:projects_project_add"), project_form)
    assert response.status_code == 302, response.content.decode()[:3000]
    project = Project.objects.get(path="game")
    assert project.full_path == "acme/game"
    assert ServiceDeskSetting.objects.filter(project=project).exists()
    home = client.get(reverse("home"))
    assert home.status_code == 200
    assert b"acme/game" in home.content
    assert client.get(reverse("issue_list", args=["acme/game"])).status_code == 200
    # A second project in the admin gets its own path, not a collision on ''.
    response = client.post(reverse("admin:projects_project_add"), {**project_form, "path": "web"})
    assert response.status_code == 302
    assert Project.objects.get(path="web").full_path == "acme/web"


def test_saving_in_a_shell_derives_full_path() -> None:
    parent = Group(path="top", name="Top")
    parent.save()
    child = Group(path="sub", name="Sub", parent=parent)
    child.save()
    project = Project(group=child, path="p", name="P")
    project.save()
    assert (parent.full_path, child.full_path, project.full_path) == ("top", "top/sub", "top/sub/p")
    project.path = "q"
    project.save(update_fields=["path"])
    project.refresh_from_db()
    assert project.full_path == "top/sub/q"


def test_renaming_a_group_carries_subgroups_and_projects_and_redirects(client) -> None:
    top = group_create(path="acme")
    sub = group_create(path="support", parent=top)
    project = project_create(group=sub, path="game")
    user = UserFactory()
    membership_set(user=user, project=project, role=Role.REPORTER)
    client.force_login(user)

    group_path_change(group=top, path="acme-corp", name="Acme Corp")

    sub.refresh_from_db()
    project.refresh_from_db()
    assert sub.full_path == "acme-corp/support"
    assert project.full_path == "acme-corp/support/game"
    old_url = "/acme/support/game/-/issues/?state=closed"
    response = client.get(old_url)
    assert response.status_code == 302
    assert response["Location"] == "/acme-corp/support/game/-/issues/?state=closed"
    assert client.get(response["Location"]).status_code == 200
    # Someone who cannot read the project learns nothing: still a 404.
    client.force_login(UserFactory())
    assert client.get(old_url).status_code == 404


def test_a_new_project_on_an_old_path_takes_it_over(client) -> None:
    group = group_create(path="acme")
    old = project_create(group=group, path="game")
    project_path_change(project=old, path="game-classic")
    assert RedirectRoute.objects.filter(path="acme/game").exists()
    project_create(group=group, path="game")
    assert not RedirectRoute.objects.filter(path="acme/game").exists()


def test_a_group_and_a_project_cannot_share_a_path() -> None:
    group = group_create(path="acme")
    project_create(group=group, path="game")
    with pytest.raises(ValidationError):
        group_create(path="game", parent=group)
    with pytest.raises(ValidationError):
        group_create(path="admin")


def test_old_service_desk_addresses_keep_routing_after_a_rename(settings) -> None:
    group = group_create(path="acme")
    project = project_create(group=group, path="game", service_desk_enabled=True)
    incoming = settings.SERVICEDESK_MAILBOXES["incoming_email"]
    old_default = incoming.address_for(project.service_desk.default_key)
    old_legacy = incoming.address_for("acme/game")

    group_path_change(group=group, path="acme-corp")
    project.refresh_from_db()
    new_default = incoming.address_for(project.service_desk.default_key)
    assert new_default != old_default

    for to in (old_default, old_legacy, new_default):
        row = deliver(make_email(to=to, subject=f"To {to}"))
        assert row.outcome == "issue_created", (to, row.reason)
        assert Issue.objects.get(pk=row.issue_id).project_id == project.pk
    # A made-up slug with the right id still does not route.
    wrong = incoming.address_for(f"other-game-{project.pk}-issue-")
    assert deliver(make_email(to=wrong)).outcome == "rejected"


def test_renaming_refuses_a_taken_path() -> None:
    group = group_create(path="acme")
    project_create(group=group, path="game")
    other = project_create(group=group, path="web")
    with pytest.raises(ValidationError):
        project_path_change(project=other, path="game")
    assert settings.SERVICEDESK_TOP_LEVEL_GROUPS == "admins"


def test_renaming_a_group_in_the_django_admin_carries_its_projects(client) -> None:
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    group = group_create(path="acme")
    project = project_create(group=group, path="game")
    response = client.post(
        reverse("admin:projects_group_change", args=[group.pk]),
        {
            "path": "acme-corp",
            "name": "Acme",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    project.refresh_from_db()
    assert project.full_path == "acme-corp/game"
    assert RedirectRoute.objects.get(path="acme/game").project_id == project.pk
    assert RedirectRoute.objects.get(path="acme").group_id == group.pk
