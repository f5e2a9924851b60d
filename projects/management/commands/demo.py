"""Create (or refresh) the demo: four users, group acme, project acme/game with issues.

Idempotent: running it again changes nothing except, when DEMO_PASSWORD is set, the users'
passwords. Without DEMO_PASSWORD a password is generated once, kept in var/demo_password and
printed each time.
"""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import User
from accounts.selectors import support_bot
from issues.models import Issue, Label
from issues.services import issue_close, issue_create, note_create, participant_add
from projects.models import Group, Project, Role, Visibility
from projects.services import group_create, membership_set, project_create

USERS = [
    ("alice", "Alice Owner", Role.OWNER),
    ("bob", "Bob Reporter", Role.REPORTER),
    ("carol", "Carol Guest", Role.GUEST),
    ("dave", "Dave Outsider", None),
]

LABELS = [("bug", "#d9534f"), ("question", "#428bca"), ("billing", "#5cb85c")]

ISSUES = [
    {
        "title": "Game crashes when I open the inventory",
        "description": (
            "Hi team,\n\nsince the last update the game crashes every time I press **I**.\n\n"
            "- Windows 11\n- version 2.3.1\n\nThanks, Jake"
        ),
        "requester": "jake@customer.example",
        "labels": ["bug"],
        "confidential": True,
        "notes": [
            ("bob", "Thanks Jake, we can reproduce it. A fix is on the way.", False),
            ("bob", "Crash is in `inventory.render()`; linked to the texture cache.", True),
        ],
    },
    {
        "title": "Refund for a double charge",
        "description": "I was charged twice for the *Gold Pack* on 3 March. Order 88231.",
        "requester": "finn@customer.example",
        "labels": ["billing"],
        "confidential": True,
        "notes": [],
    },
    {
        "title": "How do I change my username?",
        "description": "Is there a way to change my in-game name?",
        "requester": "marceline@customer.example",
        "labels": ["question"],
        "confidential": True,
        "notes": [("bob", "Settings > Profile > Name. You can change it once a month.", False)],
        "close": True,
    },
    {
        "title": "Add a colour-blind mode",
        "description": "Players keep asking for it. Let's plan it for 2.5.",
        "labels": [],
        "confidential": False,
        "notes": [],
    },
]


class Command(BaseCommand):
    help = "Create the demo users, group acme and project acme/game (idempotent)."

    def handle(self, *args: object, **options: object) -> None:
        password = self._password()
        with transaction.atomic():
            users = self._users(password)
            project = self._project(users)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: project {project.full_path} — sign in at {settings.SITE_URL}/login/"
            )
        )
        self.stdout.write(
            "  users: alice (Owner), bob (Reporter), carol (Guest), dave (no membership)"
        )
        self.stdout.write(f"  password for all of them: {password}")

    def _password(self) -> str:
        from_env = os.environ.get("DEMO_PASSWORD")
        if from_env:
            return from_env
        path = settings.VAR_DIR / "demo_password"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(12))
            path.chmod(0o600)
        return path.read_text().strip()

    def _users(self, password: str) -> dict[str, User]:
        users = {}
        for username, name, _role in USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"name": name, "email": f"{username}@acme.example"}
            )
            if created or "DEMO_PASSWORD" in os.environ or not user.has_usable_password():
                user.set_password(password)
                user.save(update_fields=["password"])
            users[username] = user
        return users

    def _project(self, users: dict[str, User]) -> Project:
        group = Group.objects.filter(full_path="acme").first() or group_create(
            path="acme", name="ACME Games"
        )
        project = Project.objects.filter(full_path="acme/game").first()
        if project is None:
            project = project_create(
                group=group,
                path="game",
                name="Game",
                visibility=Visibility.PRIVATE,
                description="The ACME game: support by email at the Service Desk address.",
                service_desk_enabled=True,
            )
        for username, _name, role in USERS:
            if role is not None:
                membership_set(user=users[username], project=project, role=role)
        labels = {}
        for title, color in LABELS:
            labels[title], _ = Label.objects.get_or_create(
                project=project, title=title, defaults={"color": color}
            )
        if not Issue.objects.filter(project=project).exists():
            self._issues(project, users, labels)
        return project

    def _issues(self, project: Project, users: dict[str, User], labels: dict[str, Label]) -> None:
        bot = support_bot()
        for spec in ISSUES:
            requester = spec.get("requester", "")
            issue = issue_create(
                project=project,
                author=bot if requester else users["alice"],
                title=spec["title"],
                description=spec["description"],
                confidential=spec["confidential"],
                labels=[labels[name] for name in spec["labels"]],
                external_author=requester,
            )
            if requester:
                participant_add(issue=issue, email=requester)
            for username, body, internal in spec["notes"]:
                note_create(issue=issue, author=users[username], body=body, internal=internal)
            if spec.get("close"):
                issue_close(issue=issue, user=users["bob"])
