"""The members page and the membership services: who sees the list, who changes it, and the
rules (Maintainers do not touch Owners; the last Owner stays)."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.selectors import support_bot
from projects import permissions
from projects.models import Membership, Project, Role, Visibility
from projects.selectors import project_member_list
from projects.services import (
    group_create,
    membership_set,
    project_create,
    project_member_add,
    project_member_remove,
    project_member_role_change,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PERSONAS = ["owner", "maintainer", "developer", "reporter", "guest", "outsider", "anonymous"]
# GET: everyone signed in who can read the project sees the list.
SEE = {
    Visibility.PRIVATE: {
        "owner": 200,
        "maintainer": 200,
        "developer": 200,
        "reporter": 200,
        "guest": 200,
        "outsider": 404,
        "anonymous": "login",
    },
    Visibility.PUBLIC: {
        "owner": 200,
        "maintainer": 200,
        "developer": 200,
        "reporter": 200,
        "guest": 200,
        "outsider": 200,
        "anonymous": "login",
    },
}
# POST (add, change role, remove): Owners and Maintainers; other readers 403.
MANAGE = {
    Visibility.PRIVATE: {
        "owner": "ok", "maintainer": "ok", "developer": 403, "reporter": 403, "guest": 403,
        "outsider": 404, "anonymous": "login",
    },
    Visibility.PUBLIC: {
        "owner": "ok", "maintainer": "ok", "developer": 403, "reporter": 403, "guest": 403,
        "outsider": 403, "anonymous": "login",
    },
}  # fmt: skip


@pytest.fixture
def everyone(owner, maintainer, developer, reporter, guest, outsider):  # type: ignore[no-untyped-def]
    return {
        "owner": owner,
        "maintainer": maintainer,
        "developer": developer,
        "reporter": reporter,
        "guest": guest,
        "outsider": outsider,
    }


@pytest.fixture
def newcomer(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="erin", name="Erin Newcomer")


def set_visibility(project: Project, visibility: str) -> None:
    Project.objects.filter(pk=project.pk).update(visibility=visibility)
    project.visibility = visibility


def log_in_as(client, everyone, persona: str) -> None:  # type: ignore[no-untyped-def]
    if persona != "anonymous":
        client.force_login(everyone[persona])


def assert_answer(response, expected: object, ok_status: int = 302) -> None:  # type: ignore[no-untyped-def]
    if expected == "ok":
        assert response.status_code == ok_status, response.content[:500]
    elif expected == "login":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    else:
        assert response.status_code == expected


def membership_of(user, project: Project) -> Membership:  # type: ignore[no-untyped-def]
    return Membership.objects.get(user=user, project=project)


# --- Role matrix --------------------------------------------------------------------------------


@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.PUBLIC])
@pytest.mark.parametrize("persona", PERSONAS)
def test_members_page_role_matrix(client, project, everyone, visibility, persona) -> None:
    set_visibility(project, visibility)
    log_in_as(client, everyone, persona)
    response = client.get(reverse("project_members", args=[project.full_path]))
    expected = SEE[visibility][persona]
    assert_answer(response, "ok" if expected == 200 else expected, 200)
    if expected == 200:
        html = response.content.decode()
        assert "Alice" in html
        assert "@carol" in html
        manages = persona in ("owner", "maintainer")
        assert ("Add a member" in html) is manages
        assert ("Change role" in html) is manages


@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.PUBLIC])
@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("action", ["add", "change", "remove"])
def test_member_actions_role_matrix(
    client, project, everyone, newcomer, visibility, persona, action
) -> None:
    set_visibility(project, visibility)
    target = everyone["guest"]  # carol, a Guest: every manager may change her
    target_membership = membership_of(target, project)
    log_in_as(client, everyone, persona)
    if action == "add":
        path = reverse("project_members", args=[project.full_path])
        data = {"username": "erin", "role": Role.REPORTER}
    elif action == "change":
        path = reverse("project_member_update", args=[project.full_path, target_membership.pk])
        data = {"role": Role.DEVELOPER}
    else:
        path = reverse("project_member_remove", args=[project.full_path, target_membership.pk])
        data = {}
    before = sorted(Membership.objects.values_list("user__username", "role"))
    response = client.post(path, data)
    expected = MANAGE[visibility][persona]
    assert_answer(response, expected)
    after = sorted(Membership.objects.values_list("user__username", "role"))
    if expected == "ok":
        assert after != before
    else:
        assert after == before


def test_members_tab_for_readers_not_for_anonymous_visitors(client, project, guest) -> None:
    set_visibility(project, Visibility.PUBLIC)
    members = reverse("project_members", args=[project.full_path])
    issues = reverse("issue_list", args=[project.full_path])
    assert f'href="{members}"' not in client.get(issues).content.decode()
    client.force_login(guest)
    assert f'href="{members}"' in client.get(issues).content.decode()


def test_unknown_membership_is_404(client, project, owner) -> None:
    other = project_create(group=project.group, path="other")
    theirs = membership_set(user=UserFactory(), project=other, role=Role.GUEST)
    client.force_login(owner)
    response = client.post(
        reverse("project_member_update", args=[project.full_path, theirs.pk]), {"role": 30}
    )
    assert response.status_code == 404
    response = client.post(reverse("project_member_remove", args=[project.full_path, theirs.pk]))
    assert response.status_code == 404
    assert Membership.objects.filter(pk=theirs.pk, role=Role.GUEST).exists()


# --- The page -----------------------------------------------------------------------------------


def test_list_shows_direct_and_inherited_members_with_roles(client, project, owner) -> None:
    # gina: only through the group; bob: directly Reporter and Guest through the group.
    gina = UserFactory(username="gina", name="Gina Group")
    membership_set(user=gina, group=project.group, role=Role.DEVELOPER)
    bob = UserFactory(username="bob", name="Bob Reporter")
    membership_set(user=bob, project=project, role=Role.REPORTER)
    membership_set(user=bob, group=project.group, role=Role.GUEST)
    client.force_login(owner)
    html = client.get(reverse("project_members", args=[project.full_path])).content.decode()
    gina_row = re.search(r'<tr data-testid="member-gina">(.*?)</tr>', html, re.S)
    assert gina_row is not None
    assert "Developer" in gina_row.group(1)
    assert "Inherited" in gina_row.group(1)
    assert "acme" in gina_row.group(1)
    assert "Change role" not in gina_row.group(1)  # changed in the group, not here
    bob_row = re.search(r'<tr data-testid="member-bob">(.*?)</tr>', html, re.S)
    assert bob_row is not None
    assert "Direct member" in bob_row.group(1)
    assert "also Guest through group acme" in bob_row.group(1)
    # Every role select has a visible label.
    for select_id in re.findall(r'<select name="role" id="([^"]+)"', html):
        assert f'<label for="{select_id}">' in html


def test_maintainer_is_not_offered_owner_and_cannot_edit_owners(
    client, project, owner, maintainer
) -> None:
    client.force_login(maintainer)
    html = client.get(reverse("project_members", args=[project.full_path])).content.decode()
    assert '<option value="50"' not in html
    alice_row = re.search(r'<tr data-testid="member-alice">(.*?)</tr>', html, re.S)
    assert alice_row is not None
    assert "Change role" not in alice_row.group(1)
    assert "Remove" not in alice_row.group(1)
    client.force_login(owner)
    html = client.get(reverse("project_members", args=[project.full_path])).content.decode()
    assert '<option value="50"' in html


def test_adding_a_member_by_username(client, project, owner, newcomer) -> None:
    client.force_login(owner)
    response = client.post(
        reverse("project_members", args=[project.full_path]),
        {"username": " @Erin ", "role": Role.DEVELOPER},
        follow=True,
    )
    assert "Erin Newcomer added as Developer." in response.content.decode()
    assert membership_of(newcomer, project).role == Role.DEVELOPER


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("nobody", "There is no user called"),
        ("support-bot", "There is no user called"),
        ("alice", "already a member"),
    ],
)
def test_add_errors_are_shown_on_the_form(client, project, owner, username, message) -> None:
    support_bot()
    client.force_login(owner)
    response = client.post(
        reverse("project_members", args=[project.full_path]),
        {"username": username, "role": Role.REPORTER},
    )
    assert response.status_code == 400
    error = re.search(r'id="id_username_error">(.*?)</div>', response.content.decode(), re.S)
    assert error is not None
    assert message in error.group(1)


def test_changing_a_role_and_removing_a_member(client, project, maintainer, reporter) -> None:
    client.force_login(maintainer)
    membership = membership_of(reporter, project)
    response = client.post(
        reverse("project_member_update", args=[project.full_path, membership.pk]),
        {"role": Role.MAINTAINER},
        follow=True,
    )
    assert "Bob is now Maintainer." in response.content.decode()
    assert membership_of(reporter, project).role == Role.MAINTAINER
    response = client.post(
        reverse("project_member_remove", args=[project.full_path, membership.pk]), follow=True
    )
    assert "Bob removed from acme/game." in response.content.decode()
    assert not Membership.objects.filter(user=reporter, project=project).exists()


def test_maintainer_forging_owner_gets_403(client, project, owner, maintainer, reporter) -> None:
    client.force_login(maintainer)
    members = reverse("project_members", args=[project.full_path])
    assert client.post(members, {"username": "erin", "role": Role.OWNER}).status_code == 403
    bob = membership_of(reporter, project)
    update = reverse("project_member_update", args=[project.full_path, bob.pk])
    assert client.post(update, {"role": Role.OWNER}).status_code == 403
    alice = membership_of(owner, project)
    update = reverse("project_member_update", args=[project.full_path, alice.pk])
    assert client.post(update, {"role": Role.GUEST}).status_code == 403
    remove = reverse("project_member_remove", args=[project.full_path, alice.pk])
    assert client.post(remove).status_code == 403
    assert membership_of(owner, project).role == Role.OWNER
    assert membership_of(reporter, project).role == Role.REPORTER


def test_last_owner_cannot_be_demoted_or_removed_error_on_the_row(client, project, owner) -> None:
    client.force_login(owner)
    alice = membership_of(owner, project)
    response = client.post(
        reverse("project_member_update", args=[project.full_path, alice.pk]),
        {"role": Role.MAINTAINER},
    )
    assert response.status_code == 400
    row = re.search(r'<tr data-testid="member-alice">(.*?)</tr>', response.content.decode(), re.S)
    assert row is not None
    assert "at least one Owner" in row.group(1)
    response = client.post(reverse("project_member_remove", args=[project.full_path, alice.pk]))
    assert response.status_code == 400
    assert membership_of(owner, project).role == Role.OWNER


def test_owner_leaving_is_sent_home(client, project, owner) -> None:
    second = UserFactory(username="olga")
    membership_set(user=second, project=project, role=Role.OWNER)
    client.force_login(owner)
    alice = membership_of(owner, project)
    response = client.post(reverse("project_member_remove", args=[project.full_path, alice.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


# --- Services -----------------------------------------------------------------------------------


def test_member_add_rules(project, owner, maintainer, newcomer) -> None:
    with pytest.raises(PermissionDenied):
        project_member_add(actor=maintainer, project=project, username="erin", role=Role.OWNER)
    with pytest.raises(ValidationError) as error:
        project_member_add(actor=owner, project=project, username="erin", role=99)
    assert "role" in error.value.message_dict
    membership = project_member_add(
        actor=maintainer, project=project, username="ERIN", role=Role.MAINTAINER
    )
    assert (membership.user, membership.role) == (newcomer, Role.MAINTAINER)
    inactive = UserFactory(username="gone", is_active=False)
    with pytest.raises(ValidationError):
        project_member_add(actor=owner, project=project, username=inactive.username, role=10)


def test_direct_role_may_not_be_below_the_inherited_one(project, owner, newcomer) -> None:
    membership_set(user=newcomer, group=project.group, role=Role.DEVELOPER)
    with pytest.raises(ValidationError) as error:
        project_member_add(actor=owner, project=project, username="erin", role=Role.REPORTER)
    assert "already Developer through the group acme" in error.value.message_dict["role"][0]
    membership = project_member_add(
        actor=owner, project=project, username="erin", role=Role.MAINTAINER
    )
    with pytest.raises(ValidationError):
        project_member_role_change(actor=owner, membership=membership, role=Role.GUEST)


def test_maintainer_cannot_touch_owners(project, owner, maintainer) -> None:
    alice = membership_of(owner, project)
    with pytest.raises(PermissionDenied):
        project_member_role_change(actor=maintainer, membership=alice, role=Role.GUEST)
    with pytest.raises(PermissionDenied):
        project_member_remove(actor=maintainer, membership=alice)
    mia = membership_of(maintainer, project)
    with pytest.raises(PermissionDenied):
        project_member_role_change(actor=maintainer, membership=mia, role=Role.OWNER)
    # Maintainers may step down themselves.
    project_member_role_change(actor=maintainer, membership=mia, role=Role.DEVELOPER)
    assert permissions.project_role(maintainer, project) == Role.DEVELOPER


def test_lower_roles_cannot_manage(project, developer, reporter) -> None:
    bob = membership_of(reporter, project)
    with pytest.raises(PermissionDenied):
        project_member_role_change(actor=developer, membership=bob, role=Role.GUEST)
    with pytest.raises(PermissionDenied):
        project_member_remove(actor=developer, membership=bob)
    with pytest.raises(PermissionDenied):
        project_member_add(actor=developer, project=project, username="bob", role=Role.GUEST)


def test_last_owner_rules(project, owner) -> None:
    alice = membership_of(owner, project)
    with pytest.raises(ValidationError, match="at least one Owner"):
        project_member_role_change(actor=owner, membership=alice, role=Role.MAINTAINER)
    with pytest.raises(ValidationError, match="at least one Owner"):
        project_member_remove(actor=owner, membership=alice)
    # An inactive second Owner does not count.
    gone = UserFactory(username="gone", is_active=False)
    membership_set(user=gone, project=project, role=Role.OWNER)
    with pytest.raises(ValidationError):
        project_member_remove(actor=owner, membership=alice)
    # An Owner of the group above does.
    membership_set(user=UserFactory(username="boss"), group=project.group, role=Role.OWNER)
    project_member_role_change(actor=owner, membership=alice, role=Role.MAINTAINER)
    assert membership_of(owner, project).role == Role.MAINTAINER


def test_owner_can_hand_over_ownership(project, owner, maintainer) -> None:
    mia = membership_of(maintainer, project)
    project_member_role_change(actor=owner, membership=mia, role=Role.OWNER)
    project_member_remove(actor=owner, membership=membership_of(owner, project))
    assert list(Membership.objects.filter(project=project, role=Role.OWNER)) == [mia]


def test_member_list_selector_merges_direct_and_inherited(project) -> None:
    top = project.group
    sub = group_create(path="games", parent=top)
    nested = project_create(group=sub, path="arcade")
    ann = UserFactory(username="ann")
    membership_set(user=ann, group=top, role=Role.REPORTER)
    membership_set(user=ann, group=sub, role=Role.MAINTAINER)
    membership_set(user=ann, project=nested, role=Role.GUEST)
    lone = UserFactory(username="lone")
    membership_set(user=lone, group=group_create(path="acme2"), role=Role.OWNER)  # not an ancestor
    (row,) = project_member_list(project=nested)
    assert row.user == ann
    assert row.role == Role.MAINTAINER
    assert row.direct is not None
    assert row.direct.role == Role.GUEST
    assert row.inherited is not None
    assert row.inherited.group == sub


def test_members_page_query_count_does_not_grow_with_members(
    client, project, owner, maintainer, reporter
) -> None:
    client.force_login(owner)
    members = reverse("project_members", args=[project.full_path])
    client.get(members)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(members).status_code == 200
        return len(ctx.captured_queries)

    few = count()
    for _i in range(40):
        membership_set(user=UserFactory(), project=project, role=Role.GUEST)
        membership_set(user=UserFactory(), group=project.group, role=Role.REPORTER)
    assert count() == few
