from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from projects.models import Project, ServiceDeskSetting, slugify_path
from projects.services import group_create, membership_set, project_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("full_path", "slug"),
    [
        ("acme/game", "acme-game"),
        ("Email/Test", "email-test"),
        ("_x_/-y-.z", "x---y--z"),
        ("a" * 70, "a" * 63),
        ("a" * 62 + "/b", "a" * 62),
    ],
)
def test_full_path_slug(full_path, slug) -> None:
    assert slugify_path(full_path) == slug


def test_project_create_makes_service_desk_settings_and_owner() -> None:
    alice = UserFactory(username="alice")
    project = project_create(group=group_create(path="acme"), path="game", creator=alice)
    settings = ServiceDeskSetting.objects.get(project=project)
    assert settings.service_desk_enabled is False
    assert settings.tickets_confidential_by_default is True
    assert settings.display_name == "Support Bot"
    assert settings.default_key == f"acme-game-{project.pk}-issue-"
    assert project.memberships.get().user == alice


def test_custom_suffix_key_and_validation() -> None:
    project = project_create(group=group_create(path="acme"), path="game")
    settings = project.service_desk
    settings.project_key = "support_1"
    settings.full_clean()
    assert settings.custom_key == "acme-game-support_1"
    settings.project_key = "Support!"
    with pytest.raises(ValidationError, match="Only lowercase letters"):
        settings.full_clean()


def test_project_paths_are_validated_and_unique() -> None:
    group = group_create(path="acme")
    project_create(group=group, path="game")
    with pytest.raises(ValidationError):
        project_create(group=group, path="game")
    with pytest.raises(ValidationError):
        project_create(group=group, path="-/bad")
    assert Project.objects.count() == 1


def test_member_add_updates_an_existing_role(project) -> None:
    user = UserFactory()
    membership_set(user=user, project=project, role=10)
    membership_set(user=user, project=project, role=40)
    assert project.memberships.get(user=user).role == 40
