"""The text/plain part of our emails is text for people: no HTML tags, no Markdown markers;
links read "text (url)", lists and quotes stay readable (as received by a real SMTP server)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from issues import plaintext
from issues.markdown import render_markdown
from issues.models import Issue, OutboundEmail
from issues.outbox import outbound_claim, outbound_send
from issues.plaintext import html_to_plain_text
from projects.services import service_desk_email_template_set
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
Status = OutboundEmail.Status
TAG = re.compile(r"</?[a-zA-Z][^<>]*>")

COMMENT = """\
We **fixed** it in _2.3.2_. See [the release notes](https://example.org/notes/2.3.2).

- open **Settings**
- choose *Update*
    - then restart

> Does it crash on start?

Run `game --safe-mode` first:

```
game --safe-mode
```

<details markdown="1">
<summary>Logs</summary>

**nothing** unusual

</details>
"""


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"


def send_pending() -> None:
    ids = list(OutboundEmail.objects.filter(status=Status.PENDING).values_list("pk", flat=True))
    outbound_send(*outbound_claim(ids))


def new_email_issue(project) -> Issue:  # type: ignore[no-untyped-def]
    row = deliver(make_email(to=INCOMING.address_for(project.service_desk.default_key)))
    assert row.outcome == "issue_created", row.reason
    return Issue.objects.get(pk=row.issue_id)


def test_a_comment_arrives_as_readable_plain_text(client, project, reporter, smtp) -> None:
    issue = new_email_issue(project)
    OutboundEmail.objects.all().delete()
    client.force_login(reporter)
    client.post(reverse("note_add", args=[project.full_path, issue.iid]), {"body": COMMENT})
    send_pending()
    message = smtp.wait_for(1)[0].message
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert TAG.search(text) is None, text
    assert "**" not in text
    assert "`" not in text
    assert "We fixed it in 2.3.2. See the release notes (https://example.org/notes/2.3.2)." in text
    assert "- open Settings\n- choose Update\n  - then restart" in text
    assert "> Does it crash on start?" in text
    assert "Run game --safe-mode first:" in text
    assert "\n    game --safe-mode\n" in text  # a code block, indented
    assert "Logs\n\nnothing unusual" in text
    assert "Unsubscribe (http://servicedesk.test/-/unsubscribe/" in text
    # The HTML part still has the formatting.
    html = message.get_body(("html",)).get_content()
    assert "<strong>fixed</strong>" in html
    assert '<a href="https://example.org/notes/2.3.2"' in html


def test_html_in_a_projects_template_is_not_in_the_text_part(project, smtp) -> None:
    service_desk_email_template_set(
        project=project,
        kind="thank_you",
        text='<details markdown="1">\n<summary>Ticket %{ISSUE_ID}</summary>\n\n'
        "We <b>read</b> every email.\n\n</details>\n\n[Stop](%{UNSUBSCRIBE_URL})",
    )
    issue = new_email_issue(project)
    send_pending()
    text = smtp.wait_for(1)[0].message.get_body(("plain",)).get_content()
    assert TAG.search(text) is None, text
    assert f"Ticket #{issue.iid}" in text
    assert "We read every email." in text
    assert "Stop (http://servicedesk.test/-/unsubscribe/" in text


def test_names_and_text_that_look_like_markup_come_out_as_written() -> None:
    html = render_markdown("A &lt; B, x < y & z > 3, snake_case and 2 * 3 = 6", remote_images=False)
    assert html_to_plain_text(html) == "A < B, x < y & z > 3, snake_case and 2 * 3 = 6\n"


def test_links_images_and_headings() -> None:
    html = render_markdown(
        "# Release\n\n## What *changed*\n\nMail [us](mailto:help@example.org), "
        "see https://example.org/a or [https://example.org/b](https://example.org/b).\n\n"
        "![the crash](https://example.org/crash.png)",
        remote_images=False,
    )
    assert html_to_plain_text(html) == (
        "Release\n=======\n\nWhat changed\n------------\n\n"
        "Mail us (help@example.org), see https://example.org/a or https://example.org/b.\n\n"
        "the crash (https://example.org/crash.png)\n"
    )


def test_html_too_large_to_convert_is_read_as_the_text_between_its_tags() -> None:
    html = "\n".join(f"<p>Paragraph <strong>{i}</strong> &amp; more.</p>" for i in range(12000))
    assert len(html) > plaintext.MAX_HTML_CHARS
    text = html_to_plain_text(html)
    assert TAG.search(text) is None
    assert text.startswith("Paragraph 0 & more.\n\nParagraph 1 & more.\n\n")
    assert text.endswith("Paragraph 11999 & more.\n")


def test_a_conversion_over_its_budget_falls_back_to_the_text(monkeypatch) -> None:
    monkeypatch.setattr(plaintext, "BUDGET_SECONDS", -1.0)  # spent before it starts
    html = render_markdown("We **fixed** it: [notes](https://example.org/n) &amp; more")
    text = html_to_plain_text(html)
    assert text == "We fixed it: notes & more\n"
