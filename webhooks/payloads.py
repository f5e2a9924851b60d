"""Webhook payloads, shaped like GitLab's (doc/user/project/integrations/webhook_events.md):
``object_kind``, ``event_type``, ``user``, ``project``, ``object_attributes``, ``labels``,
``changes``. A hook is set up by a Maintainer, who sees customers' addresses anyway, so they
are included; reply keys, thread and unsubscribe tokens and the Service Desk address (a
credential: it opens tickets) never are.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from accounts.models import User
from issues.models import Issue, Label, Note
from projects.models import Project, Visibility

Payload = dict[str, Any]
# GitLab's visibility_level numbers.
_VISIBILITY_LEVEL = {Visibility.PRIVATE: 0, Visibility.INTERNAL: 10, Visibility.PUBLIC: 20}


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def user_payload(user: User | None) -> Payload | None:
    if user is None:
        return None
    # As GitLab: the team's email addresses are not sent.
    return {
        "id": user.pk,
        "name": user.display_name,
        "username": user.username,
        "avatar_url": None,
        "email": "[REDACTED]",
    }


def project_payload(project: Project) -> Payload:
    web_url = f"{settings.SITE_URL}/{project.full_path}"
    return {
        "id": project.pk,
        "name": project.name,
        "description": project.description,
        "web_url": web_url,
        "avatar_url": None,
        "namespace": project.group.name,
        "visibility_level": _VISIBILITY_LEVEL.get(Visibility(project.visibility), 0),
        "path_with_namespace": project.full_path,
        "homepage": web_url,
        "url": web_url,
    }


def label_payload(label: Label) -> Payload:
    return {
        "id": label.pk,
        "title": label.title,
        "color": label.color,
        "project_id": label.project_id,
        "description": label.description,
        "type": "ProjectLabel",
    }


def issue_attributes(issue: Issue, labels: list[Label], assignees: list[User]) -> Payload:
    return {
        "id": issue.pk,
        "iid": issue.iid,
        "project_id": issue.project_id,
        "title": issue.title,
        "description": issue.description,
        "state": issue.state,
        "confidential": issue.confidential,
        "author_id": issue.author_id,
        "assignee_ids": [u.pk for u in assignees],
        "assignee_id": assignees[0].pk if assignees else None,
        "labels": [label_payload(label) for label in labels],
        "created_at": _time(issue.created_at),
        "updated_at": _time(issue.updated_at),
        "closed_at": _time(issue.closed_at),
        "moved_to_id": issue.moved_to_id,
        "url": settings.SITE_URL + issue.get_absolute_url(),
        # Service Desk: who wrote in (GitLab's ``service_desk_reply_to``).
        "service_desk_reply_to": issue.service_desk_reply_to or issue.external_author or None,
        "external_author_name": issue.external_author_name or None,
    }


def issue_payload(
    issue: Issue,
    *,
    actor: User | None,
    action: str,
    labels: list[Label],
    assignees: list[User],
    changes: Payload | None = None,
) -> Payload:
    attributes = issue_attributes(issue, labels, assignees) | {"action": action}
    return {
        "object_kind": "issue",
        "event_type": "confidential_issue" if issue.confidential else "issue",
        "user": user_payload(actor),
        "project": project_payload(issue.project),
        "object_attributes": attributes,
        "labels": attributes["labels"],
        "assignees": [user_payload(u) for u in assignees],
        "changes": changes or {},
    }


def note_payload(note: Note, issue: Issue, labels: list[Label], assignees: list[User]) -> Payload:
    confidential = note.internal or issue.confidential
    # A customer's reply is written by the Support Bot on the customer's behalf.
    author = None if note.external_author else note.author
    return {
        "object_kind": "note",
        "event_type": "confidential_note" if confidential else "note",
        "user": user_payload(author)
        or {
            "id": None,
            "name": note.external_name or note.external_author,
            "username": None,
            "avatar_url": None,
            "email": note.external_author,
        },
        "project_id": issue.project_id,
        "project": project_payload(issue.project),
        "object_attributes": {
            "id": note.pk,
            "note": note.body,
            "noteable_type": "Issue",
            "noteable_id": issue.pk,
            "author_id": note.author_id,
            "project_id": issue.project_id,
            "created_at": _time(note.created_at),
            "updated_at": _time(note.updated_at),
            "system": note.system,
            "internal": note.internal,
            "confidential": note.internal,
            "external_author": note.external_author or None,
            "url": f"{settings.SITE_URL}{issue.get_absolute_url()}#note-{note.pk}",
            "action": "create",
        },
        "issue": issue_attributes(issue, labels, assignees),
    }


def email_payload(
    *, issue: Issue, note: Note | None, message: Any, labels: list[Label], assignees: list[User]
) -> Payload:
    """Service Desk email received (ours; GitLab has none): the email's envelope facts and
    what it became. The raw email is not sent: it can be large, and holds what the ledger
    keeps for Maintainers only on the page."""
    return {
        "object_kind": "service_desk_email",
        "event_type": "service_desk_email",
        "user": None,
        "project": project_payload(issue.project),
        "object_attributes": {
            "id": message.pk,
            "message_id": message.message_id,
            "from": message.from_address,
            "subject": message.subject,
            "received_at": _time(message.received_at),
            "transport": message.transport,
            "outcome": "note_added" if note is not None else "issue_created",
            "note_id": note.pk if note is not None else None,
            "issue_id": issue.pk,
            "issue_iid": issue.iid,
        },
        "issue": issue_attributes(issue, labels, assignees),
    }


def sample_issue_payload(project: Project, user: User) -> Payload:
    """What "Test" sends: an issue event for a made-up issue (no real one is disclosed)."""
    now = _time(project.created_at)
    url = f"{settings.SITE_URL}/{project.full_path}/-/issues/1"
    return {
        "object_kind": "issue",
        "event_type": "issue",
        "user": user_payload(user),
        "project": project_payload(project),
        "object_attributes": {
            "id": 0,
            "iid": 1,
            "project_id": project.pk,
            "title": "Test issue from Service Desk",
            "description": "A webhook test.",
            "state": "opened",
            "confidential": False,
            "author_id": user.pk,
            "assignee_ids": [],
            "assignee_id": None,
            "labels": [],
            "created_at": now,
            "updated_at": now,
            "closed_at": None,
            "moved_to_id": None,
            "url": url,
            "service_desk_reply_to": None,
            "external_author_name": None,
            "action": "open",
        },
        "labels": [],
        "assignees": [],
        "changes": {},
    }
