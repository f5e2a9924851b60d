"""Accounts in the product: invitations, password reset, the profile, sign-up, the admin area,
and new groups and projects — each email recorded in the outbox with its cause."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from accounts.models import User
from issues.models import OutboundEmail
from projects.models import DescriptionTemplate, Group, Membership, Project, Role
from projects.services import group_create, membership_set, project_create
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def link_in(email: OutboundEmail) -> str:
    found = re.search(r"https?://\S+?(/-/\S+/)", email.body_text)
    assert found, email.body_text
    return found.group(1)


def account_emails(to: str) -> list[OutboundEmail]:
    return list(OutboundEmail.objects.filter(kind="account", recipient=to).order_by("pk"))


@pytest.fixture
def project():  # type: ignore[no-untyped-def]
    return project_create(group=group_create(path="acme"), path="game")


def test_a_maintainer_invites_by_email_and_the_invited_person_sets_a_password(
    client, project
) -> None:
    maintainer = UserFactory(username="mia")
    membership_set(user=maintainer, project=project, role=Role.MAINTAINER)
    client.force_login(maintainer)
    url = reverse("project_member_invite", args=[project.full_path])
    response = client.post(url, {"email": "erin@newcomer.example", "role": Role.REPORTER})
    assert response.status_code == 302
    erin = User.objects.get(email="erin@newcomer.example")
    assert erin.username == "erin"
    assert not erin.has_usable_password()
    assert Membership.objects.get(user=erin, project=project).role == Role.REPORTER
    [invitation] = account_emails("erin@newcomer.example")
    assert invitation.status == "pending"
    assert "erin" in invitation.body_text

    client.logout()
    link = link_in(invitation)
    form = client.get(link, follow=True)
    assert form.status_code == 200
    assert b"new_password1" in form.content
    done = client.post(form.redirect_chain[-1][0],
                       {"new_password1": "a long new secret 42", "new_password2":
                        "a long new secret 42"})  # fmt: skip
    assert done.status_code == 302
    assert done["Location"] == reverse("login")
    erin.refresh_from_db()
    assert erin.check_password("a long new secret 42")
    # The link is spent.
    assert b"does not work" in client.get(link, follow=True).content


def test_inviting_an_existing_address_adds_that_account_without_an_email(client, project) -> None:
    owner = UserFactory()
    membership_set(user=owner, project=project, role=Role.OWNER)
    known = UserFactory(username="known", email="known@team.example")
    client.force_login(owner)
    url = reverse("project_member_invite", args=[project.full_path])
    assert client.post(url, {"email": "KNOWN@team.example", "role": Role.GUEST}).status_code == 302
    assert Membership.objects.get(user=known, project=project).role == Role.GUEST
    assert not OutboundEmail.objects.filter(kind="account").exists()


def test_below_maintainer_nobody_invites(client, project) -> None:
    reporter = UserFactory()
    membership_set(user=reporter, project=project, role=Role.REPORTER)
    client.force_login(reporter)
    url = reverse("project_member_invite", args=[project.full_path])
    assert client.post(url, {"email": "x@y.example", "role": Role.GUEST}).status_code == 403
    assert not User.objects.filter(email="x@y.example").exists()


def test_password_reset_emails_a_link_through_the_outbox_and_is_rate_limited(
    client, settings, redis_cache_flushed
) -> None:
    settings.SERVICEDESK_PASSWORD_RESET_ATTEMPTS = 2
    user = UserFactory(username="frank", email="frank@team.example")
    response = client.post(reverse("password_reset"), {"email": "frank@team.example"})
    assert response.status_code == 302
    # An unknown address gets the same answer, and no email.
    assert client.post(reverse("password_reset"), {"email": "no@one.example"}).status_code == 302
    [email] = account_emails("frank@team.example")
    assert not account_emails("no@one.example")
    limited = client.post(reverse("password_reset"), {"email": "frank@team.example"})
    assert limited.status_code == 429
    assert len(account_emails("frank@team.example")) == 1

    form = client.get(link_in(email), follow=True)
    new = "another long secret 7"
    done = client.post(form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new)


def test_profile_changes_the_name_and_the_email_after_confirmation(client) -> None:
    user = UserFactory(username="gina", email="gina@team.example")
    client.force_login(user)
    assert client.get(reverse("profile")).status_code == 200
    assert client.post(reverse("profile"), {"name": "Gina G."}).status_code == 302
    user.refresh_from_db()
    assert user.name == "Gina G."
    assert b'href="/-/profile/"' in client.get(reverse("home")).content  # the header's name

    response = client.post(reverse("profile_email"), {"email": "gina@new.example"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.email == "gina@team.example"  # not before the link is followed
    [email] = account_emails("gina@new.example")
    link = link_in(email)
    assert client.get(link).status_code == 200
    user.refresh_from_db()
    assert user.email == "gina@team.example"  # GET only asks
    assert b"now uses" in client.post(link).content
    user.refresh_from_db()
    assert user.email == "gina@new.example"
    assert client.post(link).status_code == 404  # spent: the address changed


def test_password_change_needs_the_old_password(client) -> None:
    user = UserFactory()
    client.force_login(user)
    url = reverse("password_change")
    bad = client.post(url, {"old_password": "wrong", "new_password1": "x long secret 99",
                            "new_password2": "x long secret 99"})  # fmt: skip
    assert bad.status_code == 200
    assert b"old_password" in bad.content
    good = client.post(url, {"old_password": PASSWORD, "new_password1": "x long secret 99",
                             "new_password2": "x long secret 99"})  # fmt: skip
    assert good.status_code == 302
    user.refresh_from_db()
    assert user.check_password("x long secret 99")


def test_sign_up_is_off_by_default_and_works_when_on(client, settings) -> None:
    assert client.get(reverse("signup")).status_code == 302  # to the sign-in page
    client.force_login(UserFactory())
    assert client.get(reverse("signup")).status_code == 404
    client.logout()
    settings.SERVICEDESK_SIGNUP_ENABLED = True
    assert b"Create an account" in client.get(reverse("login")).content
    data = {"username": "hank", "email": "hank@x.example", "name": "",
            "password1": "a fine password 1", "password2": "a fine password 1"}  # fmt: skip
    assert client.post(reverse("signup"), data).status_code == 302
    assert User.objects.get(username="hank").check_password("a fine password 1")


def test_admin_area_is_for_admins_only(client) -> None:
    client.force_login(UserFactory())
    for name in ("admin_users", "admin_groups", "admin_projects", "admin_templates"):
        assert client.get(reverse(name)).status_code == 404
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    for name in ("admin_users", "admin_groups", "admin_projects", "admin_templates"):
        assert client.get(reverse(name)).status_code == 200


def test_admin_creates_invites_deactivates_and_makes_admins(client) -> None:
    boss = UserFactory(username="boss", is_staff=True, is_superuser=True)
    client.force_login(boss)
    data = {"username": "ivy", "name": "Ivy", "email": "ivy@team.example", "password": ""}
    assert client.post(reverse("admin_users"), data).status_code == 302
    ivy = User.objects.get(username="ivy")
    assert len(account_emails("ivy@team.example")) == 1
    assert b"ivy" in client.get(reverse("admin_users") + "?q=IVY").content
    assert b"ivy@team" not in client.get(reverse("admin_users") + "?q=nobody").content

    def act(action: str) -> None:
        url = reverse("admin_user_action", args=[ivy.pk, action])
        assert client.post(url).status_code == 302
        ivy.refresh_from_db()

    act("deactivate")
    assert not ivy.is_active
    act("reactivate")
    assert ivy.is_active
    act("make-admin")
    assert ivy.is_superuser
    assert ivy.is_staff
    act("unmake-admin")
    assert not ivy.is_superuser
    act("resend-invitation")
    assert len(account_emails("ivy@team.example")) == 2


def test_staff_who_are_not_superusers_cannot_make_admins(client) -> None:
    staff = UserFactory(username="ops", is_staff=True)
    target = UserFactory(username="target")
    client.force_login(staff)
    client.post(reverse("admin_user_action", args=[target.pk, "make-admin"]))
    client.post(reverse("admin_user_action", args=[staff.pk, "make-admin"]))
    target.refresh_from_db()
    staff.refresh_from_db()
    assert not target.is_superuser
    assert not staff.is_superuser


def test_admin_renames_a_project_and_manages_instance_templates(client) -> None:
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    group = group_create(path="acme")
    project = project_create(group=group, path="game")
    url = reverse("admin_project_edit", args=[project.pk])
    assert client.post(url, {"path": "arcade", "name": "Arcade"}).status_code == 302
    project.refresh_from_db()
    assert project.full_path == "acme/arcade"
    assert b"acme/game" in client.get(url).content  # the former path is listed

    assert client.post(reverse("admin_templates"), {"name": "Triage", "content": "/label ~new"}
                       ).status_code == 302  # fmt: skip
    template = DescriptionTemplate.objects.get(name="Triage", project=None, group=None)
    edit = reverse("admin_template_edit", args=[template.pk])
    assert client.post(edit, {"name": "Triage", "content": "/label ~triage"}).status_code == 302
    template.refresh_from_db()
    assert template.content == "/label ~triage"
    assert client.post(edit, {"delete": "1"}).status_code == 302
    assert not DescriptionTemplate.objects.filter(pk=template.pk).exists()


def test_maintainers_create_projects_in_their_groups_only(client, settings) -> None:
    group = group_create(path="acme")
    other = group_create(path="other")
    maintainer = UserFactory()
    membership_set(user=maintainer, group=group, role=Role.MAINTAINER)
    membership_set(user=maintainer, group=other, role=Role.DEVELOPER)
    client.force_login(maintainer)
    data = {"path": "desk", "name": "", "visibility": "private", "description": ""}
    assert client.post(reverse("project_new"), {**data, "group": other.pk}).status_code == 403
    assert client.post(reverse("project_new"), {**data, "group": group.pk}).status_code == 302
    project = Project.objects.get(full_path="acme/desk")
    assert Membership.objects.get(project=project, user=maintainer).role == Role.OWNER

    # Subgroups where Maintainer+; top-level groups only when everyone may.
    assert client.post(reverse("group_new"), {"path": "sub", "parent": group.pk}).status_code == 302
    assert Group.objects.filter(full_path="acme/sub").exists()
    assert client.post(reverse("group_new"), {"path": "mine"}).status_code == 403
    settings.SERVICEDESK_TOP_LEVEL_GROUPS = "everyone"
    assert client.post(reverse("group_new"), {"path": "mine"}).status_code == 302
    assert Membership.objects.get(group__full_path="mine", user=maintainer).role == Role.OWNER
