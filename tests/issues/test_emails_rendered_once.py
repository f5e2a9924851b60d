"""A batch renders each project's email template once: the issues' numbers are put into the
rendered text and HTML afterwards, and the result is exactly what rendering each issue's email
on its own gives."""

from __future__ import annotations

import pytest

import issues.emails as emails
from issues.emails import Bodies, Kind, _render, _render_with
from issues.models import OutboundEmail
from tests.factories import IssueFactory
from tests.mailroom.helpers import INCOMING, deliver_together, make_email

pytestmark = pytest.mark.django_db

# Every place an issue's number can stand in a template: a heading ("#12" at the start of a
# line), emphasis, a link's text and target, a bare URL (linkified), a list item, a table cell
# and a code span, in text and in HTML.
TEMPLATE = """%{ISSUE_ID}

**%{ISSUE_ID}** · _%{ISSUE_PATH}_ · [%{ISSUE_ID}](%{ISSUE_URL}) · %{ISSUE_URL}

1. %{ISSUE_ID} (%{ISSUE_PATH})
2. `%{ISSUE_ID}` <b>%{ISSUE_ID}</b>

| ticket | link |
|---|---|
| %{ISSUE_ID} | <%{ISSUE_URL}> |

[Unsubscribe](%{UNSUBSCRIBE_URL})
"""


@pytest.fixture(autouse=True)
def mailboxes(settings):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING}


@pytest.mark.parametrize("template", [TEMPLATE, ""])  # "": the instance default
def test_a_template_is_rendered_once_and_reads_as_rendered_alone(project, template) -> None:
    setting = project.service_desk
    setting.thank_you_template = template
    setting.save()
    issues = [IssueFactory(project=project) for _ in range(12)]
    bodies: Bodies = {}
    for issue in issues:
        together = _render(Kind.THANK_YOU, issue, setting, "", "", bodies)
        alone = _render_with(Kind.THANK_YOU, issue, setting, "", "", "")
        assert alone is not None
        assert not alone.iid_token
        assert together.iid_token
        assert together.iid_token not in alone.html
        assert together.for_issue(issue, "f" * 32) == alone.for_issue(issue, "f" * 32)
        text, body_html = together.for_issue(issue, "f" * 32)
        assert f"#{issue.iid}" in text
        assert f"#{issue.iid}" in body_html
    assert len(bodies) == 1  # one rendering for the twelve issues


def test_a_template_showing_the_description_is_rendered_per_issue(project) -> None:
    setting = project.service_desk
    setting.thank_you_template = "Ticket %{ISSUE_ID}: %{ISSUE_DESCRIPTION}"
    setting.save()
    issues = [IssueFactory(project=project, description=f"Broken *{n}*") for n in range(3)]
    bodies: Bodies = {}
    for n, issue in enumerate(issues):
        rendered = _render(Kind.THANK_YOU, issue, setting, "", "", bodies)
        assert not rendered.iid_token
        assert f"Ticket #{issue.iid}: Broken <em>{n}</em>" in rendered.html
    assert len(bodies) == 3


def test_a_text_over_the_render_budget_is_rendered_per_issue(project, monkeypatch) -> None:
    """A fallback for time is not what the next issue's email would be: not shared."""
    issue = IssueFactory(project=project)
    real = emails.render_markdown_final
    monkeypatch.setattr(
        emails, "render_markdown_final", lambda text, **kw: (real(text, **kw)[0], False)
    )
    bodies: Bodies = {}
    rendered = _render(Kind.THANK_YOU, issue, project.service_desk, "", "", bodies)
    assert not rendered.iid_token
    assert f"#{issue.iid}" in rendered.html


def test_a_batch_of_new_tickets_renders_its_thank_you_once(project, monkeypatch) -> None:
    calls: list[str] = []
    real = emails.render_markdown_final
    monkeypatch.setattr(
        emails, "render_markdown_final", lambda text, **kw: calls.append(text) or real(text, **kw)
    )
    to = INCOMING.address_for(project.service_desk.default_key)
    rows = deliver_together([make_email(to=to, subject=f"Help {n}") for n in range(5)])
    assert [row.outcome for row in rows] == ["issue_created"] * 5
    assert len(calls) == 1
    thank_yous = OutboundEmail.objects.filter(kind="thank_you").select_related("issue")
    assert len(thank_yous) == 5
    for email in thank_yous:
        assert f"#{email.issue.iid}" in email.body_text
        assert f"#{email.issue.iid}" in email.body_html
        assert "/-/unsubscribe/" in email.body_html
        assert email.sent_notification.unsubscribe_token in email.body_html
