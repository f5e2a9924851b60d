"""The issue page in a real browser: bob (Reporter) triages a customer's issue — previews a
comment, labels, assigns, adds a participant, toggles confidentiality, moves it to another
project — and carol (Guest) sees neither the confidential issue nor any customer address."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.models import User
from accounts.selectors import support_bot
from issues.models import EmailParticipant, Issue, Note
from issues.services import note_create
from projects.models import Group, Role
from projects.services import membership_set, project_create
from tests.browser.helpers import demo_data, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(monkeypatch, transactional_db) -> None:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)
    # A second project where bob is Reporter too: somewhere to move issues to.
    web = project_create(
        group=Group.objects.get(full_path="acme"), path="web", name="Web",
        service_desk_enabled=True,
    )  # fmt: skip
    membership_set(user=User.objects.get(username="bob"), project=web, role=Role.REPORTER)


def system_note(page: Page, text: str):  # type: ignore[no-untyped-def]
    return page.get_by_test_id("system-note").filter(has_text=text)


def test_reporter_triages_and_moves_an_issue_guest_sees_no_addresses(
    demo, live_server, page: Page, browser, screenshot
) -> None:
    issue = Issue.objects.get(project__full_path="acme/game", title__startswith="Game crashes")
    issue_url = f"{live_server.url}/acme/game/-/issues/{issue.iid}/"
    log_in(page, live_server.url, "bob")
    page.goto(issue_url)
    expect(page.get_by_test_id("requester")).to_contain_text("jake@customer.example")
    expect(page.get_by_test_id("participants")).to_contain_text("jake@customer.example")
    screenshot(page, "issue-page")

    # Preview: htmx posts the text and swaps in the sanitised HTML; nothing is saved.
    page.get_by_label("Comment").fill("Try **safe mode** <script>window.pwned = 1</script>")
    page.get_by_role("button", name="Preview").click()
    preview = page.get_by_test_id("comment-preview")
    expect(preview.locator("strong")).to_have_text("safe mode")
    assert preview.locator("script").count() == 0
    assert page.evaluate("window.pwned") is None
    expect(page).to_have_url(issue_url)  # no page load: htmx swapped the fragment
    screenshot(page, "issue-preview")
    assert not Note.objects.filter(issue=issue, body__contains="safe mode").exists()

    # Labels.
    page.get_by_text("Edit labels").click()
    page.get_by_label("question").check()
    page.get_by_role("button", name="Save labels").click()
    expect(page.get_by_test_id("issue-labels")).to_contain_text("question")
    expect(system_note(page, "added label question")).to_be_visible()

    # Assignees: Reporter and up can be assigned.
    page.get_by_text("Edit assignees").click()
    page.get_by_label("Bob Reporter").check()
    page.get_by_role("button", name="Save assignees").click()
    expect(page.get_by_test_id("issue-assignees")).to_contain_text("Bob Reporter")
    expect(system_note(page, "assigned to @bob")).to_be_visible()

    # A participant: the note naming the address is internal.
    page.get_by_label("Add a participant by email").fill("boss@customer.example")
    page.get_by_role("button", name="Add participant").click()
    expect(page.get_by_test_id("participants")).to_contain_text("boss@customer.example")
    expect(system_note(page, "added boss@customer.example as participant")).to_contain_text(
        "internal"
    )

    # Confidentiality off and on again (a private project allows it).
    page.get_by_role("button", name="Turn off confidentiality").click()
    expect(page.get_by_test_id("confidential-badge")).to_have_count(0)
    page.get_by_role("button", name="Make confidential").click()
    expect(page.get_by_test_id("confidential-badge")).to_be_visible()

    # Move to acme/web: the copy opens, the original is closed and points to it.
    page.get_by_text("Move to another project").click()
    page.get_by_label("Move to project").select_option(label="acme/web")
    page.get_by_role("button", name="Move issue").click()
    expect(page).to_have_url(re.compile(r"/acme/web/-/issues/1/$"))
    expect(system_note(page, f"moved this issue from acme/game#{issue.iid}")).to_be_visible()
    expect(page.get_by_test_id("participants")).to_contain_text("boss@customer.example")
    expect(page.get_by_test_id("note").filter(has_text="we can reproduce it")).to_be_visible()
    screenshot(page, "issue-moved")
    moved = Issue.objects.get(project__full_path="acme/web", iid=1)
    assert moved.confidential
    assert moved.external_author == "jake@customer.example"
    assert set(EmailParticipant.objects.filter(issue=moved).values_list("email", flat=True)) == {
        "jake@customer.example",
        "boss@customer.example",
    }
    page.goto(issue_url)
    expect(page.get_by_test_id("moved-notice")).to_contain_text("acme/web#1")
    expect(page.get_by_test_id("issue-state")).to_have_text("Closed")

    # carol (Guest): the confidential issue does not exist for her …
    carol = browser.new_context().new_page()
    log_in(carol, live_server.url, "carol")
    response = carol.goto(issue_url)
    assert response is not None
    assert response.status == 404
    # … and a customer's issue that is not confidential shows her no address at all.
    refund = Issue.objects.get(project__full_path="acme/game", title__startswith="Refund")
    Issue.objects.filter(pk=refund.pk).update(confidential=False)
    note_create(
        issue=refund,
        author=support_bot(),
        body="Any update?",
        external_author="finn@customer.example",
    )
    response = carol.goto(f"{live_server.url}/acme/game/-/issues/{refund.iid}/")
    assert response is not None
    assert response.status == 200
    expect(carol.get_by_test_id("note").filter(has_text="Any update?")).to_contain_text("via email")
    html = carol.content()
    assert "@customer.example" not in html
    assert "Email participants" not in html
    assert "Edit labels" not in html


def test_quick_actions_in_a_comment_previewed_then_run(demo, live_server, page: Page) -> None:
    """bob previews a comment with quick actions (htmx lists what they will do), posts it, and
    the page says what was done; the comment is posted without its commands."""
    issue = Issue.objects.get(project__full_path="acme/game", title__startswith="Game crashes")
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/acme/game/-/issues/{issue.iid}/")
    page.get_by_label("Comment").fill("Looking into it.\n/label ~question\n/assign me")
    page.get_by_role("button", name="Preview").click()
    actions = page.get_by_test_id("quick-actions")
    expect(actions).to_contain_text("Add ~question")
    expect(actions).to_contain_text("Assign @bob")
    expect(page.get_by_test_id("comment-preview")).not_to_contain_text("/label")
    page.get_by_role("button", name="Send reply", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Labelled ~question, assigned @bob.")
    expect(system_note(page, "added label question")).to_be_visible()
    expect(system_note(page, "assigned to @bob")).to_be_visible()
    note = Note.objects.get(issue=issue, body__startswith="Looking into it.")
    assert note.body == "Looking into it."
