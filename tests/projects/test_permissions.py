"""Roles, group inheritance and what each role may do (projects.permissions)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from accounts.selectors import support_bot
from projects import permissions
from projects.models import Role, Visibility
from projects.selectors import project_list_for_user
from projects.services import group_create, membership_set, project_create
from tests.factories import IssueFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_group_membership_is_inherited_by_nested_projects() -> None:
    top = group_create(path="acme")
    sub = group_create(path="games", parent=top)
    project = project_create(group=sub, path="arcade")
    assert project.full_path == "acme/games/arcade"
    user = UserFactory()
    membership_set(user=user, group=top, role=Role.REPORTER)
    assert permissions.project_role(user, project) == Role.REPORTER


def test_highest_of_project_and_group_roles_wins() -> None:
    top = group_create(path="acme")
    project = project_create(group=top, path="game")
    user = UserFactory()
    membership_set(user=user, group=top, role=Role.GUEST)
    membership_set(user=user, project=project, role=Role.MAINTAINER)
    assert permissions.project_role(user, project) == Role.MAINTAINER


def test_group_membership_does_not_leak_to_sibling_group_with_common_prefix() -> None:
    acme = group_create(path="acme")
    acme2 = group_create(path="acme2")
    project = project_create(group=acme2, path="game")
    user = UserFactory()
    membership_set(user=user, group=acme, role=Role.OWNER)
    assert permissions.project_role(user, project) is None
    assert project_list_for_user(user=user) == []


@pytest.mark.parametrize(
    ("role", "read_confidential", "internal", "administer"),
    [
        (Role.GUEST, False, False, False),
        (Role.REPORTER, True, True, False),
        (Role.DEVELOPER, True, True, False),
        (Role.MAINTAINER, True, True, True),
        (Role.OWNER, True, True, True),
        (None, False, False, False),
    ],
)
def test_role_matrix_on_a_private_project(project, role, read_confidential, internal, administer):
    user = UserFactory()
    if role is not None:
        membership_set(user=user, project=project, role=role)
    confidential = IssueFactory(project=project, confidential=True)
    public = IssueFactory(project=project, confidential=False)

    assert permissions.can_read_project(user, project) is (role is not None)
    assert permissions.can_read_issue(user, confidential) is read_confidential
    assert permissions.can_read_issue(user, public) is (role is not None)
    assert permissions.can_add_internal_note(user, confidential) is internal
    assert permissions.can_see_customer_emails(user, project) is internal
    assert permissions.can_update_issue(user, confidential) is read_confidential
    assert permissions.can_administer_project(user, project) is administer


def test_public_project_lets_anyone_read_non_confidential_issues(project) -> None:
    project.visibility = Visibility.PUBLIC
    project.save()
    anonymous = AnonymousUser()
    stranger = UserFactory()
    open_issue = IssueFactory(project=project)
    secret = IssueFactory(project=project, confidential=True)
    assert permissions.can_read_issue(anonymous, open_issue)
    assert not permissions.can_comment_on_issue(anonymous, open_issue)
    assert permissions.can_comment_on_issue(stranger, open_issue)
    assert not permissions.can_read_issue(stranger, secret)
    assert not permissions.can_see_customer_emails(stranger, project)


def test_internal_project_needs_a_signed_in_user(project) -> None:
    project.visibility = Visibility.INTERNAL
    project.save()
    assert not permissions.can_read_project(AnonymousUser(), project)
    assert permissions.can_read_project(UserFactory(), project)


def test_author_may_close_own_issue_without_reporter_role(project, guest) -> None:
    issue = IssueFactory(project=project, author=guest)
    assert permissions.can_update_issue(guest, issue)


def test_superuser_reads_everything(project) -> None:
    admin = UserFactory(is_superuser=True)
    assert permissions.project_role(admin, project) == Role.OWNER
    assert permissions.can_read_issue(admin, IssueFactory(project=project, confidential=True))


def test_support_bot_has_no_rights_anywhere(project) -> None:
    bot = support_bot()
    assert permissions.project_role(bot, project) is None
    assert not permissions.can_comment_on_issue(bot, IssueFactory(project=project))


def test_role_is_looked_up_once_per_project(project, reporter, django_assert_num_queries) -> None:
    with django_assert_num_queries(1):
        for _ in range(5):
            permissions.project_role(reporter, project)


def test_my_projects_lists_direct_and_group_projects_with_roles(project) -> None:
    user = UserFactory()
    other = project_create(group=group_create(path="other"), path="tool")
    membership_set(user=user, group=project.group, role=Role.DEVELOPER)
    membership_set(user=user, project=other, role=Role.GUEST)
    project_create(group=group_create(path="hidden"), path="secret")
    listed = {(p.project.full_path, p.role) for p in project_list_for_user(user=user)}
    assert listed == {("acme/game", Role.DEVELOPER), ("other/tool", Role.GUEST)}
