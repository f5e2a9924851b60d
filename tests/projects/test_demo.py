from __future__ import annotations

import io

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from accounts.models import User
from issues.models import Issue
from projects.models import Project, Role
from projects.permissions import project_role

pytestmark = pytest.mark.django_db


def run_demo() -> str:
    out = io.StringIO()
    call_command("demo", stdout=out)
    return out.getvalue()


def test_demo_is_idempotent_and_sets_up_personas(monkeypatch) -> None:
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    first = run_demo()
    counts = (User.objects.count(), Project.objects.count(), Issue.objects.count())
    run_demo()
    assert (User.objects.count(), Project.objects.count(), Issue.objects.count()) == counts
    assert "demo-pass-123" in first

    project = Project.objects.get(full_path="acme/game")
    assert project.service_desk.service_desk_enabled
    roles = {u: project_role(User.objects.get(username=u), project) for u in
             ("alice", "bob", "carol", "dave")}  # fmt: skip
    assert roles == {"alice": Role.OWNER, "bob": Role.REPORTER, "carol": Role.GUEST, "dave": None}
    issues = Issue.objects.filter(project=project)
    assert issues.filter(confidential=True).exists()
    assert issues.filter(confidential=False).exists()
    assert authenticate(username="bob", password="demo-pass-123") is not None


def test_demo_generates_a_password_once_and_prints_it(monkeypatch, settings, tmp_path) -> None:
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    settings.VAR_DIR = tmp_path
    first = run_demo()
    password = (tmp_path / "demo_password").read_text().strip()
    assert password in first
    assert password in run_demo()
    assert authenticate(username="alice", password=password) is not None
