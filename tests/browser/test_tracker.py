"""The issue tracker in a real browser: filters (htmx swaps the list), search, sort, keyboard
shortcuts, and what a Guest does not see."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from issues.models import Issue
from tests.browser.helpers import assert_accessible, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def row_titles(page: Page) -> list[str]:
    return page.locator("[data-issue-link]").all_inner_texts()


def test_reporter_filters_searches_sorts_and_drives_the_tracker_by_keyboard(
    demo, live_server, page: Page, screenshot
) -> None:
    tracker = f"{live_server.url}/acme/game/-/issues/"
    crash = Issue.objects.get(project__full_path="acme/game", title__startswith="Game crashes")
    log_in(page, live_server.url, "bob")
    page.goto(tracker)
    rows = page.get_by_test_id("issue-row")
    expect(rows).to_have_count(3)  # open: the colour-blind mode, the refund, the crash
    expect(page.get_by_test_id("count-closed")).to_have_text("1")
    expect(page.get_by_test_id("issue-list")).to_contain_text("jake@customer.example")
    screenshot(page, "tracker")

    # Label: htmx swaps the list and puts the filter in the address bar.
    page.get_by_label("Label", exact=True).select_option("bug")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Game crashes when I open the inventory")
    expect(page).to_have_url(re.compile(r"[?&]label=bug(&|$)"))
    expect(page.get_by_test_id("count-opened")).to_have_text("1")

    # Search (debounced while typing), together with the Service Desk view.
    page.get_by_label("Label", exact=True).select_option("")
    expect(rows).to_have_count(3)
    page.get_by_role("link", name=re.compile(r"^Service Desk \d+")).click()
    page.get_by_label("Search").fill("double charge")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Refund for a double charge")
    expect(page.get_by_test_id("tracker-summary")).to_contain_text("matching the filters")
    screenshot(page, "tracker-filtered")

    # Nothing matches: the empty state offers to clear the filters, which keeps the view.
    page.get_by_label("Search").fill("no such words anywhere")
    expect(page.get_by_text("No issues match these filters.")).to_be_visible()
    page.get_by_role("link", name="Clear filters").click()
    expect(rows).to_have_count(2)  # Service Desk, open: the refund and the crash
    expect(page).to_have_url(re.compile(r"view=service_desk"))

    # Sort: oldest first.
    page.goto(tracker)
    page.get_by_label("Sort by").select_option("created_asc")
    expect(rows.first).to_contain_text("Game crashes when I open the inventory")
    assert row_titles(page) == [
        "Game crashes when I open the inventory",
        "Refund for a double charge",
        "Add a colour-blind mode",
    ]

    # "?" shows the help; Escape closes it.
    page.locator("h1").click()  # leave the form: shortcuts are off while typing
    page.keyboard.press("?")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("Select the next / previous issue")
    screenshot(page, "tracker-help")
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()

    # "/" focuses the search without typing a slash into it.
    page.keyboard.press("/")
    search = page.get_by_label("Search")
    expect(search).to_be_focused()
    expect(search).to_have_value("")
    page.locator("h1").click()

    # j j k: the first row is selected (visibly, and its link has focus); Enter opens it.
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(rows.nth(1)).to_have_class(re.compile(r"\bis-selected\b"))
    page.keyboard.press("k")
    expect(rows.nth(0)).to_have_class(re.compile(r"\bis-selected\b"))
    expect(rows.nth(1)).not_to_have_class(re.compile(r"\bis-selected\b"))
    expect(rows.nth(0).locator("[data-issue-link]")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{tracker}{crash.iid}/")

    # On the issue page, "c" puts the cursor in the comment box (and types no "c").
    page.keyboard.press("c")
    comment_box = page.locator("#id_body")
    expect(comment_box).to_be_focused()
    expect(comment_box).to_have_value("")

    # "o" opens the selected row too; a modifier key turns the shortcut off.
    page.goto(tracker)
    page.keyboard.press("Control+j")
    expect(page.locator("[data-issue-row].is-selected")).to_have_count(0)
    page.keyboard.press("j")
    page.keyboard.press("o")
    expect(page).to_have_url(re.compile(r"/-/issues/\d+/$"))


def test_guest_sees_no_confidential_issue_and_no_customer_email(
    demo, live_server, page: Page, screenshot
) -> None:
    log_in(page, live_server.url, "carol")
    page.goto(f"{live_server.url}/acme/game/-/issues/?state=all")
    rows = page.get_by_test_id("issue-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Add a colour-blind mode")
    content = page.content()
    assert "@customer.example" not in content
    assert "incoming+" not in content
    assert "Confidential" not in page.locator("main").inner_text()
    expect(page.get_by_label("Confidentiality")).to_have_count(0)
    screenshot(page, "tracker-guest")

    page.get_by_label("Search").fill("inventory")
    expect(page.get_by_text("No issues match these filters.")).to_be_visible()
    assert "@customer.example" not in page.content()


def test_reporter_works_through_waiting_for_us_and_opens_the_customer_page(
    demo, live_server, page: Page, screenshot
) -> None:
    """The refund waits for an answer (nobody replied to Finn); the crash does not (bob did).
    From the ticket, the requester leads to everything Finn wrote in."""
    Issue.objects.filter(title__startswith="Refund").update(external_author_name="Finn Mertens")
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/acme/game/-/issues/")
    page.get_by_role("link", name=re.compile(r"^Waiting for us \d+")).click()
    rows = page.get_by_test_id("issue-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Refund for a double charge")
    expect(rows.first).to_contain_text("by Finn Mertens (via email)")
    expect(rows.first.get_by_test_id("waiting")).to_have_text(re.compile(r"^waiting "))
    expect(page.get_by_label("Sort by")).to_have_value("waiting")
    screenshot(page, "waiting-for-us")

    rows.first.locator("[data-issue-link]").click()
    requester = page.get_by_test_id("requester")
    expect(requester).to_contain_text("Finn Mertens")
    requester.get_by_role("link", name="finn@customer.example").click()
    expect(page.get_by_test_id("customer-heading")).to_contain_text("Finn Mertens")
    expect(page.get_by_test_id("customer-issue")).to_have_count(1)
    screenshot(page, "customer")


def test_reporter_bulk_closes_three_tickets(demo, live_server, page: Page, screenshot) -> None:
    """Tick three rows, choose Close, apply: back on the list (filters kept), told so, each
    ticket closed with its system note."""
    tracker = f"{live_server.url}/acme/game/-/issues/?sort=created_asc"
    opened = list(Issue.objects.filter(project__full_path="acme/game", state="opened"))
    log_in(page, live_server.url, "bob")
    page.goto(tracker)
    rows = page.get_by_test_id("issue-row")
    expect(rows).to_have_count(3)
    page.get_by_text("Bulk edit").click()
    for n in range(3):
        rows.nth(n).get_by_test_id("bulk-check").check()
    page.get_by_label("Action").select_option("close")
    assert_accessible(page)
    screenshot(page, "tracker-bulk-edit")
    page.get_by_test_id("bulk-apply").click()

    expect(page.get_by_text("3 issues closed.")).to_be_visible()
    expect(page).to_have_url(tracker)
    expect(page.get_by_test_id("count-opened")).to_have_text("0")
    expect(page.get_by_text("No open issues. Nothing to triage.")).to_be_visible()
    for issue in opened:
        issue.refresh_from_db()
        assert (issue.state, issue.closed_by.username) == ("closed", "bob")
        assert issue.notes.filter(system=True, body="closed", author__username="bob").exists()
    assert_accessible(page)


def test_on_a_phone_the_filters_fold_behind_a_filter_button(
    demo, live_server, page: Page, screenshot
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/acme/game/-/issues/")
    expect(page.get_by_label("Label", exact=True)).to_be_hidden()
    expect(page.get_by_test_id("issue-row").first).to_be_in_viewport()
    screenshot(page, "tracker-phone")
    page.get_by_test_id("filter-toggle").click()
    page.get_by_label("Label", exact=True).select_option("bug")
    expect(page.get_by_test_id("issue-row")).to_have_count(1)
    page.reload()  # htmx swaps the list only: the button counts on the next full page
    expect(page.get_by_test_id("filter-toggle")).to_contain_text("Filter 1")
    assert_accessible(page)
