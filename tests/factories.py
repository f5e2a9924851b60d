from __future__ import annotations

import factory

from accounts.models import User
from issues.models import Issue, Label, Note
from projects.models import Group, Project, Role
from projects.services import group_create, membership_set, project_create

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    name = factory.LazyAttribute(lambda u: u.username.title())
    email = factory.LazyAttribute(lambda u: f"{u.username}@team.example")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        if create:
            obj.save()


class GroupFactory(factory.Factory):
    """Groups go through the service, which derives full_path."""

    class Meta:
        model = Group

    path = factory.Sequence(lambda n: f"group{n}")

    @classmethod
    def _create(cls, model_class, path, parent=None, **kwargs):  # type: ignore[no-untyped-def]
        return group_create(path=path, parent=parent, **kwargs)


class ProjectFactory(factory.Factory):
    class Meta:
        model = Project

    group = factory.SubFactory(GroupFactory)
    path = factory.Sequence(lambda n: f"project{n}")

    @classmethod
    def _create(cls, model_class, **kwargs):  # type: ignore[no-untyped-def]
        return project_create(**kwargs)


class LabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Label

    project = factory.SubFactory(ProjectFactory)
    title = factory.Sequence(lambda n: f"label{n}")


class IssueFactory(factory.Factory):
    class Meta:
        model = Issue

    project = factory.SubFactory(ProjectFactory)
    author = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Issue number {n}")
    description = "Something is broken."

    @classmethod
    def _create(cls, model_class, **kwargs):  # type: ignore[no-untyped-def]
        from issues.services import issue_create

        return issue_create(**kwargs)


class NoteFactory(factory.Factory):
    class Meta:
        model = Note

    issue = factory.SubFactory(IssueFactory)
    author = factory.SubFactory(UserFactory)
    body = "A comment."

    @classmethod
    def _create(cls, model_class, **kwargs):  # type: ignore[no-untyped-def]
        from issues.services import note_create

        return note_create(**kwargs)


def member(project: Project, role: Role, username: str) -> User:
    user = UserFactory(username=username)
    membership_set(user=user, project=project, role=role)
    return user
