"""Quick actions in description templates, applied by the Support Bot to new email issues."""

from __future__ import annotations

import pytest

from accounts.selectors import support_bot
from issues.quick_actions import apply_quick_actions
from projects.models import Role
from projects.services import membership_set
from tests.factories import IssueFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_assign_in_a_template_follows_the_reporter_and_up_rule(
    project, reporter, developer, guest, outsider
) -> None:
    """The same rule as the sidebar: only who can read every issue of the project (Reporter+,
    directly or through its group) is assigned; Guests and outsiders are ignored."""
    group_reporter = UserFactory(username="gina")
    membership_set(user=group_reporter, group=project.group, role=Role.REPORTER)
    issue = IssueFactory(project=project, author=support_bot(), confidential=True)

    result = apply_quick_actions(
        issue=issue,
        text="Thanks for writing.\n/assign @carol @dave @bob\n/assign @dan @gina @nobody",
        user=support_bot(),
        template=True,
    )

    assert sorted(u.username for u in issue.assignees.all()) == ["bob", "dan", "gina"]
    assert result.applied == ["assigned @bob", "assigned @dan, @gina"]
    assert result.refused == [
        "/assign @carol @dave @bob: @carol cannot be assigned in this project",
        "/assign @carol @dave @bob: @dave cannot be assigned in this project",
        "/assign @dan @gina @nobody: @nobody cannot be assigned in this project",
    ]
    assert result.text == "Thanks for writing."
