from __future__ import annotations

import secrets
from collections.abc import Callable

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.selectors import support_bot
from projects import permissions
from projects.selectors import project_get_for_user, service_desk_addresses
from satisfaction.selectors import satisfaction_latest
from saved_replies.selectors import saved_replies_usable
from saved_replies.services import saved_reply_fill
from servicedesk.http import anonymous_404_to_login

from .filters import PER_PAGE, SORTS, IssueFilterForm, page_size
from .forms import (
    AssigneesForm,
    BulkEditForm,
    ConfidentialityForm,
    ConvertForm,
    LabelsForm,
    MoveForm,
    NoteForm,
    ParticipantForm,
    PreviewForm,
)
from .markdown import render_markdown_many
from .models import EmailParticipant, Issue, Note, SentNotification, Upload
from .presence import presence_leave, presence_others, presence_poll_seconds, presence_touch
from .quick_actions import quick_actions_explain, quick_actions_parse
from .selectors import (
    assignable_users,
    customer_recent_issues,
    issue_get_for_user,
    issue_move_targets,
    issue_tracker_for_user,
    issues_for_bulk_edit,
    label_list_for_project,
    merge_target,
    move_notes_for_user,
    note_deliveries,
    note_emailed_to,
    note_list_for_issue,
    notes_public_since,
    participant_list_for_issue,
    reply_recipients,
    upload_get_by_token,
    upload_get_for_user,
)
from .services import (
    BULK_ACTIONS,
    BulkEdit,
    NotePosted,
    confidentiality_required,
    issue_assignees_set,
    issue_close,
    issue_confidentiality_set,
    issue_convert_to_service_desk,
    issue_labels_set,
    issue_merge,
    issue_move,
    issue_participant_add,
    issue_participant_remove,
    issue_reopen,
    issue_snooze,
    issue_unsnooze,
    issues_bulk_edit,
    note_make_public,
    note_post,
    participant_bouncing_clear,
    participant_unsubscribe,
)
from .snooze import SnoozeError, snooze_until, snooze_words

# A long thread on the issue page: its first and newest notes, the others folded (when at
# least THREAD_FOLD_MIN would be).
THREAD_FIRST = 10
THREAD_LAST = 30
THREAD_FOLD_MIN = 10
BULK_EDIT_MAX = 1000  # issues per bulk edit: one request, one transaction
INLINE_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def _issue_for(request: HttpRequest, full_path: str, iid: int) -> Issue:
    project = project_get_for_user(user=request.user, full_path=full_path)
    return issue_get_for_user(user=request.user, project=project, iid=iid)


PER_PAGE_SESSION_KEY = "tracker_per_page"


def _tracker_page_size(request: HttpRequest) -> int:
    """Rows on the tracker's page: as the query string asks, remembered in a signed-in
    person's session; without one, as they last asked (50 rows stay 50 from one visit to the
    next, in every project)."""
    signed_in = request.user.is_authenticated
    remembered = request.session.get(PER_PAGE_SESSION_KEY) if signed_in else None
    if "per_page" not in request.GET:
        return page_size(remembered)
    size = page_size(request.GET["per_page"])
    if signed_in and remembered != size:
        request.session[PER_PAGE_SESSION_KEY] = size
    return size


@anonymous_404_to_login
@require_GET
def issue_list(request: HttpRequest, full_path: str) -> HttpResponse:
    """The tracker: state tabs, the Service Desk view, filters, sorting, pages (SPEC §5).

    The filter form is a plain GET form; htmx sends the same GET and swaps only the results.
    """
    user = request.user
    project = project_get_for_user(user=user, full_path=full_path)
    per_page = _tracker_page_size(request)
    tracker = issue_tracker_for_user(
        user=user,
        project=project,
        filters=IssueFilterForm(request.GET).filters(),
        page_number=request.GET.get("page"),
        per_page=per_page,
    )
    can_see_emails = permissions.can_see_customer_emails(user, project)
    context = {
        "project": project,
        "tracker": tracker,
        "filters": tracker.filters,
        "page": tracker.page,
        "can_see_emails": can_see_emails,
        "can_filter_confidential": permissions.can_read_confidential_issues(user, project),
        "service_desk_enabled": project.service_desk.service_desk_enabled,
        "sorts": SORTS.items(),
        "per_page": per_page,
        "per_page_choices": PER_PAGE,
    }
    if permissions.can_bulk_edit_issues(user, project):
        # One query (the people), only when there are rows: the labels are the filter form's.
        context["bulk"] = {
            "actions": BULK_ACTIONS.items(),
            "labels": tracker.choices.labels,
            "assignable": assignable_users(project=project),  # asked only if there are rows
            "max": BULK_EDIT_MAX,
        }
    if can_see_emails and project.service_desk.service_desk_enabled:
        context["service_desk_addresses"] = service_desk_addresses(project=project)
    # A history restore after a cache miss asks for the whole page, HX-Request or not.
    partial = request.headers.get("HX-Request") and not request.headers.get(
        "HX-History-Restore-Request"
    )
    template = "issues/_issue_list_results.html" if partial else "issues/issue_list.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def issue_bulk(request: HttpRequest, full_path: str) -> HttpResponse:
    """The tracker's bulk edit: one action on the ticked issues, the page's, or every issue
    the list's filters select (the query string it posts to), at most BULK_EDIT_MAX of them.
    Each issue the user may not change is skipped; then back to the list, filters kept."""
    user = request.user
    project = project_get_for_user(user=user, full_path=full_path)
    if not permissions.can_bulk_edit_issues(user, project):
        raise PermissionDenied
    back = reverse("issue_list", args=[project.full_path])
    if request.GET:
        back = f"{back}?{request.GET.urlencode()}"
    labels = label_list_for_project(project=project)
    people = list(assignable_users(project=project))
    form = BulkEditForm(request.POST)
    form.fields["action"].choices = list(BULK_ACTIONS.items())
    form.fields["labels"].choices = [(label.pk, label.title) for label in labels]
    form.fields["assignees"].choices = [(person.pk, person.username) for person in people]
    if not form.is_valid():
        for message in _form_errors(form):
            messages.error(request, _("Nothing changed: %(message)s") % {"message": message})
        return redirect(back)
    data = form.cleaned_data
    scope = data["scope"]
    issues, total = issues_for_bulk_edit(
        user=user,
        project=project,
        limit=BULK_EDIT_MAX,
        iids=None if scope == "all" else data["iid" if scope == "selected" else "page_iid"],
        filters=IssueFilterForm(request.GET).filters() if scope == "all" else None,
    )
    allowed = [issue for issue in issues if permissions.can_triage_issue(user, issue)]
    chosen_labels, chosen_people = set(data["labels"]), set(data["assignees"])
    result = issues_bulk_edit(
        issues=allowed,
        user=user,  # type: ignore[arg-type]  # login_required
        action=data["action"],
        labels=[label for label in labels if label.pk in chosen_labels],
        assignees=[person for person in people if person.pk in chosen_people],
    )
    _bulk_report(request, result, data["action"], forbidden=len(issues) - len(allowed))
    if total > len(issues):
        messages.warning(
            request,
            _(
                "Only the first %(max)s of %(total)s issues were edited (at most %(max)s at a "
                "time): do it again for the rest."
            )
            % {"max": f"{BULK_EDIT_MAX:,}", "total": f"{total:,}"},
        )
    return redirect(back)


# "3 issues closed", by action.
_BULK_DONE: dict[str, Callable[[int], str]] = {
    "add_labels": lambda n: ngettext("%(count)s issue labelled", "%(count)s issues labelled", n),
    "remove_labels": lambda n: ngettext(
        "%(count)s issue unlabelled", "%(count)s issues unlabelled", n
    ),
    "assign": lambda n: ngettext("%(count)s issue assigned", "%(count)s issues assigned", n),
    "unassign": lambda n: ngettext("%(count)s issue unassigned", "%(count)s issues unassigned", n),
    "close": lambda n: ngettext("%(count)s issue closed", "%(count)s issues closed", n),
    "reopen": lambda n: ngettext("%(count)s issue reopened", "%(count)s issues reopened", n),
    "confidential": lambda n: ngettext(
        "%(count)s issue made confidential", "%(count)s issues made confidential", n
    ),
    "not_confidential": lambda n: ngettext(
        "%(count)s issue made visible to everyone", "%(count)s issues made visible to everyone", n
    ),
}


def _bulk_report(request: HttpRequest, result: BulkEdit, action: str, *, forbidden: int) -> None:
    """The flash messages: "3 issues closed (1 already was)", then one warning per reason
    issues were skipped."""
    changed = len(result.changed)
    text = _BULK_DONE[action](changed) % {"count": f"{changed:,}"}
    if result.unchanged:
        already = len(result.unchanged)
        text += " " + ngettext("(%(count)s already was)", "(%(count)s already were)", already) % {
            "count": f"{already:,}"
        }
    messages.success(request, f"{text}.")
    for reason, skipped in result.skipped.items():
        numbers = ", ".join(f"#{issue.iid}" for issue in skipped[:20])
        more = " …" if len(skipped) > 20 else ""
        messages.warning(
            request,
            ngettext(
                "%(count)s issue skipped (%(numbers)s%(more)s): %(reason)s.",
                "%(count)s issues skipped (%(numbers)s%(more)s): %(reason)s.",
                len(skipped),
            )
            % {"count": f"{len(skipped):,}", "numbers": numbers, "more": more, "reason": reason},
        )
    if forbidden:
        messages.warning(
            request,
            ngettext(
                "%(count)s issue skipped: you may not change them.",
                "%(count)s issues skipped: you may not change them.",
                forbidden,
            )
            % {"count": f"{forbidden:,}"},
        )


def _render_issue(
    request: HttpRequest,
    issue: Issue,
    form: NoteForm | None = None,
    status: int = 200,
    *,
    preview: str | None = None,
    preview_actions: list[str] | None = None,
    errors: dict[str, list[str]] | None = None,
    values: dict[str, str] | None = None,
    held: list[Note] | None = None,
    held_close: bool = False,
) -> HttpResponse:
    """The issue page. ``errors``/``values`` put a failed sidebar form's messages and input back
    next to it (keys: labels, assignees, confidential, participants, convert, move). ``held``:
    the messages that arrived while the reply in ``form`` was being written (``note_add``)."""
    user = request.user
    project = issue.project
    can_see_emails = permissions.can_see_customer_emails(user, project)
    can_triage = permissions.can_triage_issue(user, issue)
    participants = participant_list_for_issue(user=user, issue=issue)
    every_note = list(note_list_for_issue(user=user, issue=issue))
    first, folded, last = _fold_thread(every_note, unfold=request.GET.get("notes") == "all")
    notes = first + last  # what is rendered: the Markdown, moves and deliveries of these only
    written = [note for note in notes if not note.system]
    # A reply's quoted history (our earlier emails, other people's words): Reporter+ only.
    quoting = [note for note in written if note.quoted] if can_see_emails else []
    texts = [issue.description, *(n.body for n in written), *(n.quoted for n in quoting)]
    description_html, *notes_html = render_markdown_many(texts)
    rendered = iter(notes_html)
    for note in written:
        note.body_html = mark_safe(next(rendered))  # type: ignore[attr-defined]  # noqa: S308 - sanitised
    for note in quoting:
        note.quoted_html = mark_safe(next(rendered))  # type: ignore[attr-defined]  # noqa: S308 - sanitised
    moves = move_notes_for_user(user=user, notes=notes)
    form = form or _note_form()
    # The thread's newest note, shown or folded: what a reply written on this page has seen.
    newest = max((note.pk for note in every_note), default=0)
    if held is not None:
        # The page now shows the new messages: the next send of this text is not held again.
        form.data = form.data.copy()
        form.data["seen"] = str(newest)
    elif not form.is_bound and form.initial.get("seen") is None:
        form.initial["seen"] = newest
    held_ids = {note.pk for note in held or ()}
    for note in notes:
        note.held_new = note.pk in held_ids  # type: ignore[attr-defined]
    for note in notes:
        note.move = moves.get(note.pk)  # type: ignore[attr-defined]
    if can_see_emails:
        known = _participant_addresses(issue, participants)
        deliveries = note_deliveries(notes=notes)
        for note in notes:
            note.sender_is_participant = note.external_author.lower() in known  # type: ignore[attr-defined]
            note.deliveries = deliveries.get(note.pk, [])  # type: ignore[attr-defined]
    context = {
        "project": project,
        "issue": issue,
        "description_html": mark_safe(description_html),  # noqa: S308 - sanitised by bleach
        "notes": first,
        "folded_notes": folded,
        "last_notes": last,
        "form": form,
        "held": held,
        "held_close": held_close,
        # A browser cannot send the files of a held reply again by itself.
        "held_files": bool(held) and bool(form.is_bound and form.files),
        "preview": preview,
        "preview_actions": preview_actions or [],
        "errors": errors or {},
        "values": values or {},
        "can_comment": permissions.can_comment_on_issue(user, issue),
        "can_add_internal_note": permissions.can_add_internal_note(user, issue),
        "can_update": permissions.can_update_issue(user, issue),
        "can_see_emails": can_see_emails,
        "can_triage": can_triage,
        "participants": participants,
        "requester_address": (issue.service_desk_reply_to or issue.external_author).lower(),
        "max_participants": settings.SERVICEDESK_MAX_PARTICIPANTS,
        "confidentiality_required": confidentiality_required(issue),
        "service_desk_on": project.service_desk.service_desk_enabled,
        # Empty below Reporter (no participants loaded): their comment box names nobody.
        "recipients": reply_recipients(
            participants=participants, service_desk_on=project.service_desk.service_desk_enabled
        ),
        "moved_to_visible": issue.moved_to is not None
        and permissions.can_read_issue(user, issue.moved_to),
        "merged_url": reverse("issue_detail", args=[project.full_path, issue.merged_into.iid])
        if issue.merged_into is not None
        else "",
    }
    if can_see_emails:
        context["customer_issues"] = customer_recent_issues(user=user, issue=issue)
        context["rating"] = satisfaction_latest(issue=issue)
    if context["can_comment"]:
        context["saved_replies"] = list(saved_replies_usable(user=user, project=project))
    if context["can_add_internal_note"]:
        # The team sees who else has the issue open; it counts as a heartbeat too.
        presence_touch(issue_id=issue.pk, user=user, writing="")  # type: ignore[arg-type]
        context["presence"] = _presence_context(request, issue, seen=newest, rendering=True)
    if can_triage:
        context["project_labels"] = label_list_for_project(project=project)
        context["assignable"] = list(assignable_users(project=project))
        context["move_targets"] = issue_move_targets(user=user, issue=issue)
        context["label_ids"] = {label.pk for label in issue.labels.all()}
        context["assignee_ids"] = {u.pk for u in issue.assignees.all()}
    return render(request, "issues/issue_detail.html", context, status=status)


def _fold_thread(notes: list[Note], *, unfold: bool) -> tuple[list[Note], list[Note], list[Note]]:
    """A long thread as the page shows it: its first THREAD_FIRST and newest THREAD_LAST notes,
    the ones between folded behind "Show N older notes" (``?notes=all``), as GitLab does: the
    page costs the same for a thread of 60 notes or of 600. Every folded note keeps an anchor,
    so a link to it (``#note-123``) still finds it (app.js unfolds the thread for it).
    ``unfold``: the whole thread."""
    if unfold or len(notes) <= THREAD_FIRST + THREAD_LAST + THREAD_FOLD_MIN:
        return notes, [], []
    return notes[:THREAD_FIRST], notes[THREAD_FIRST:-THREAD_LAST], notes[-THREAD_LAST:]


def _participant_addresses(issue: Issue, participants: list[EmailParticipant]) -> set[str]:
    """Lower-cased senders whose emails count as from a participant: every participant, and
    the requester's From address when their Reply-To address is the participant."""
    known = {p.email.lower() for p in participants}
    if issue.service_desk_reply_to and issue.service_desk_reply_to.lower() in known:
        known.add(issue.external_author.lower())
    return known


@anonymous_404_to_login
@require_GET
def issue_detail(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    issue = _issue_for(request, full_path, iid)
    return _render_issue(request, issue, _saved_reply_form(request, issue))


def _saved_reply_form(request: HttpRequest, issue: Issue) -> NoteForm | None:
    """``?saved_reply=<id>``: the comment box starts with that saved reply, filled in (the
    Saved replies menu without JavaScript)."""
    wanted = request.GET.get("saved_reply", "")
    if not wanted.isdigit() or not permissions.can_comment_on_issue(request.user, issue):
        return None
    usable = saved_replies_usable(user=request.user, project=issue.project)
    reply = usable.filter(pk=int(wanted)).first()
    if reply is None:
        return None
    text = saved_reply_fill(reply=reply, issue=issue, user=request.user)  # type: ignore[arg-type]
    return _note_form(body=text)


def _note_form(**initial: object) -> NoteForm:
    """An empty comment box with a fresh one-time token (``once``)."""
    return NoteForm(initial={"once": secrets.token_urlsafe(16), **initial})


# How long a comment box's one-time token is remembered once posted: a resent POST within this
# time redirects to the note instead of posting it again.
NOTE_TOKEN_TTL = 3600


def _note_token_key(request: HttpRequest, token: str) -> str:
    return f"note-once:{request.user.pk}:{token}"


@login_required
@require_POST
def note_add(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    issue = _issue_for(request, full_path, iid)
    if not permissions.can_comment_on_issue(request.user, issue):
        raise PermissionDenied
    form = NoteForm(request.POST, request.FILES)
    if not form.is_valid():
        return _render_issue(request, issue, form, status=400)
    internal = form.cleaned_data["internal"]
    if internal and not permissions.can_add_internal_note(request.user, issue):
        raise PermissionDenied
    can_update = permissions.can_update_issue(request.user, issue)
    close = "and_close" in request.POST
    if close and not can_update:
        raise PermissionDenied
    if not internal and "send_anyway" not in request.POST:
        newer = _written_since(request, issue, form)
        if newer:
            return _hold_reply(request, issue, form, newer, close=close)
    # The form's one-time token, claimed before posting: a double click or a resent POST finds
    # it taken and goes to the note the first one posted. (A form without one still posts.)
    token = form.cleaned_data["once"]
    key = _note_token_key(request, token)
    if token and not cache.add(key, 0, NOTE_TOKEN_TTL):
        return _already_posted(request, issue, cache.get(key))
    try:
        posted = note_post(
            issue=issue,
            author=request.user,
            body=form.cleaned_data["body"],
            internal=internal,
            files=form.cleaned_data["files"],
            # Members who may update the issue run quick actions; anyone else's lines are text.
            quick_actions=can_update,
            close=close,
        )
    except BaseException:
        if token:
            cache.delete(key)  # nothing was posted: the same form may be sent again
        raise
    if token and posted.note is not None:
        cache.set(key, posted.note.pk, NOTE_TOKEN_TTL)
    presence_leave(issue_id=issue.pk, user=request.user)  # type: ignore[arg-type]
    _flash_posted(request, issue, posted, internal=internal)
    if posted.note is None or posted.issue.pk != issue.pk:
        return redirect(_issue_url(posted.issue))
    return redirect(_issue_url(issue, f"note-{posted.note.pk}"))


def _written_since(request: HttpRequest, issue: Issue, form: NoteForm) -> list[Note]:
    """The public messages others added since the page was loaded, if this post would add a
    public message too (a comment of quick actions only answers nobody)."""
    seen = form.cleaned_data["seen"]
    if seen is None:  # a form from before collision detection, or another client
        return []
    text = form.cleaned_data["body"]
    if permissions.can_update_issue(request.user, issue):
        text = quick_actions_parse(text).text
    if not text.strip() and not form.cleaned_data["files"]:
        return []
    return notes_public_since(user=request.user, issue=issue, after=seen)


def _hold_reply(
    request: HttpRequest, issue: Issue, form: NoteForm, newer: list[Note], *, close: bool
) -> HttpResponse:
    """Don't send: show what arrived, with *Send anyway* and *Edit first* (409 Conflict)."""
    return _render_issue(request, issue, form, status=409, held=newer, held_close=close)


def _already_posted(request: HttpRequest, issue: Issue, note_id: int | None) -> HttpResponse:
    messages.info(request, _("That comment was already posted."))
    return redirect(_issue_url(issue, f"note-{note_id}" if note_id else ""))


def _flash_posted(
    request: HttpRequest, issue: Issue, posted: NotePosted, *, internal: bool
) -> None:
    """Say what was sent to whom, then what the quick actions and *Send & close* did."""
    if posted.note is not None:
        if internal:
            messages.success(request, _("Internal note added."))
        elif permissions.can_see_customer_emails(request.user, issue.project):
            emailed = note_emailed_to(note=posted.note)
            sent = (
                _("Reply sent to %(addresses)s.") % {"addresses": ", ".join(emailed)}
                if emailed
                else _("Comment added.")
            )
            messages.success(request, sent)
        else:
            messages.success(request, _("Comment added."))
    if posted.actions is not None:
        if posted.actions.applied:
            messages.success(request, posted.actions.summary())
        for refusal in posted.actions.refused:
            messages.warning(request, _("Not done: %(refusal)s.") % {"refusal": refusal})
    if posted.closed:
        messages.success(request, _("Issue #%(iid)s closed.") % {"iid": issue.iid})


def _change_state(request: HttpRequest, full_path: str, iid: int, *, close: bool) -> HttpResponse:
    issue = _issue_for(request, full_path, iid)
    if not permissions.can_update_issue(request.user, issue):
        raise PermissionDenied
    if close:
        issue_close(issue=issue, user=request.user)
        messages.success(request, _("Issue #%(iid)s closed.") % {"iid": issue.iid})
    else:
        issue_reopen(issue=issue, user=request.user)
        messages.success(request, _("Issue #%(iid)s reopened.") % {"iid": issue.iid})
    return redirect("issue_detail", full_path=issue.project.full_path, iid=issue.iid)


@login_required
@require_POST
def issue_close_view(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    return _change_state(request, full_path, iid, close=True)


@login_required
@require_POST
def issue_reopen_view(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    return _change_state(request, full_path, iid, close=False)


# --- The issue page's other actions: each a plain POST form (works without JS) that redirects
# back to the issue, or re-renders it with the error next to the form (400).


def _issue_url(issue: Issue, anchor: str = "") -> str:
    url = issue.get_absolute_url()
    return f"{url}#{anchor}" if anchor else url


def _triaged_issue(request: HttpRequest, full_path: str, iid: int) -> Issue:
    """The issue for a sidebar action: 404 if unreadable, 403 below Reporter."""
    issue = _issue_for(request, full_path, iid)
    if not permissions.can_triage_issue(request.user, issue):
        raise PermissionDenied
    return issue


def _form_errors(form: forms.Form) -> list[str]:
    return [message for field_errors in form.errors.values() for message in field_errors]


@login_required
@require_POST
def note_preview(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    """The comment box's Markdown, rendered and sanitised as it will be shown. htmx gets the
    fragment; without JS the page comes back with the text kept and the preview above it."""
    issue = _issue_for(request, full_path, iid)
    if not permissions.can_comment_on_issue(request.user, issue):
        raise PermissionDenied
    form = PreviewForm(request.POST)
    body = form.cleaned_data["body"] if form.is_valid() else ""
    text, actions = body, []
    if permissions.can_update_issue(request.user, issue):
        text, actions = quick_actions_explain(issue=issue, text=body, user=request.user)
    if request.headers.get("HX-Request"):
        return render(
            request, "issues/_markdown_preview.html", {"preview": text, "preview_actions": actions}
        )
    internal = forms.CheckboxInput().value_from_datadict(request.POST, {}, "internal")
    note_form = _note_form(body=body, internal=internal)
    if request.POST.get("once"):
        note_form.initial["once"] = request.POST["once"]
    if request.POST.get("seen", "").isdigit():
        note_form.initial["seen"] = int(request.POST["seen"])
    return _render_issue(request, issue, note_form, preview=text, preview_actions=actions)


@login_required
@require_POST
def issue_labels_update(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    issue = _triaged_issue(request, full_path, iid)
    labels = label_list_for_project(project=issue.project)
    form = LabelsForm(request.POST)
    form.fields["labels"].choices = [(label.pk, label.title) for label in labels]
    if not form.is_valid():
        return _render_issue(request, issue, status=400, errors={"labels": _form_errors(form)})
    chosen = set(form.cleaned_data["labels"])
    issue_labels_set(
        issue=issue, user=request.user, labels=[label for label in labels if label.pk in chosen]
    )
    messages.success(request, _("Labels saved."))
    return redirect(_issue_url(issue))


@login_required
@require_POST
def issue_assignees_update(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    issue = _triaged_issue(request, full_path, iid)
    people = list(assignable_users(project=issue.project))
    form = AssigneesForm(request.POST)
    form.fields["assignees"].choices = [(u.pk, u.username) for u in people]
    if not form.is_valid():
        return _render_issue(request, issue, status=400, errors={"assignees": _form_errors(form)})
    chosen = set(form.cleaned_data["assignees"])
    issue_assignees_set(
        issue=issue, user=request.user, assignees=[u for u in people if u.pk in chosen]
    )
    messages.success(request, _("Assignees saved."))
    return redirect(_issue_url(issue))


@login_required
@require_POST
def issue_confidentiality_update(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    issue = _triaged_issue(request, full_path, iid)
    form = ConfidentialityForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError(_form_errors(form))
        confidential = form.cleaned_data["confidential"]
        issue_confidentiality_set(issue=issue, user=request.user, confidential=confidential)
    except ValidationError as error:
        return _render_issue(request, issue, status=400, errors={"confidential": error.messages})
    messages.success(
        request,
        _("The issue is confidential.") if confidential else _("The issue is visible to all."),
    )
    return redirect(_issue_url(issue))


@login_required
@require_POST
def issue_merge_view(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    """Merge this ticket into another of the project, named by its number (``#12`` or ``12``)."""
    issue = _triaged_issue(request, full_path, iid)
    text = request.POST.get("target", "").strip()[:20]
    try:
        target = merge_target(issue=issue, user=request.user, text=text)
        target = issue_merge(issue=issue, user=request.user, target=target)
    except ValidationError as error:
        return _render_issue(
            request, issue, status=400, errors={"merge": error.messages}, values={"merge": text}
        )
    messages.success(request, _("Merged #%(from)s into this ticket.") % {"from": issue.iid})
    return redirect(_issue_url(target))


@login_required
@require_POST
def issue_snooze_view(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    """Snooze (``until``: a choice or a date typed in ``custom``), or wake (``wake``)."""
    issue = _triaged_issue(request, full_path, iid)
    if request.POST.get("wake"):
        issue_unsnooze(issue=issue, user=request.user)
        messages.success(request, _("The issue is awake."))
        return redirect(_issue_url(issue))
    text = (request.POST.get("custom") or request.POST.get("until") or "").strip()[:100]
    try:
        until = snooze_until(text, project=issue.project)
        issue_snooze(issue=issue, user=request.user, until=until)
    except (SnoozeError, ValidationError) as error:
        messages_ = error.messages if isinstance(error, ValidationError) else [str(error)]
        return _render_issue(
            request, issue, status=400, errors={"snooze": messages_}, values={"snooze": text}
        )
    messages.success(request, _("Snoozed %(until)s.") % {"until": snooze_words(until)})
    return redirect(_issue_url(issue))


@login_required
@require_POST
def participant_add_view(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    issue = _triaged_issue(request, full_path, iid)
    form = ParticipantForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError(_form_errors(form))
        participant = issue_participant_add(
            issue=issue, user=request.user, email=form.cleaned_data["email"]
        )
    except ValidationError as error:
        return _render_issue(
            request,
            issue,
            status=400,
            errors={"participants": error.messages},
            values={"participant": request.POST.get("email", "")},
        )
    messages.success(request, _("%(email)s added as a participant.") % {"email": participant.email})
    return redirect(_issue_url(issue, "participants"))


def _participant_of(issue: Issue, participant_id: int) -> EmailParticipant:
    participant = EmailParticipant.objects.filter(issue=issue, pk=participant_id).first()
    if participant is None:
        raise Http404("No such participant")
    participant.issue = issue
    return participant


@login_required
@require_POST
def participant_remove_view(
    request: HttpRequest, full_path: str, iid: int, participant_id: int
) -> HttpResponse:
    issue = _triaged_issue(request, full_path, iid)
    participant = _participant_of(issue, participant_id)
    issue_participant_remove(participant=participant, user=request.user)
    messages.success(
        request, _("%(email)s is no longer a participant.") % {"email": participant.email}
    )
    return redirect(_issue_url(issue, "participants"))


@login_required
@require_POST
def note_make_public_view(
    request: HttpRequest, full_path: str, iid: int, note_id: int
) -> HttpResponse:
    issue = _triaged_issue(request, full_path, iid)
    note = Note.objects.filter(issue=issue, pk=note_id).first()
    if note is None:
        raise Http404("No such note")
    note.issue = issue
    if note_make_public(note=note, user=request.user):
        messages.success(request, _("The reply is public now and was emailed to the participants."))
    return redirect(_issue_url(issue, f"note-{note.pk}"))


@login_required
@require_POST
def participant_bouncing_clear_view(
    request: HttpRequest, full_path: str, iid: int, participant_id: int
) -> HttpResponse:
    issue = _triaged_issue(request, full_path, iid)
    participant = _participant_of(issue, participant_id)
    participant_bouncing_clear(participant=participant, user=request.user)
    messages.success(request, _("Emails go to %(email)s again.") % {"email": participant.email})
    return redirect(_issue_url(issue, "participants"))


@login_required
@require_POST
def issue_convert_view(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    """A normal issue becomes a Service Desk issue: the email given is its requester."""
    issue = _triaged_issue(request, full_path, iid)
    form = ConvertForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError(_form_errors(form))
        issue = issue_convert_to_service_desk(
            issue=issue, user=request.user, email=form.cleaned_data["email"]
        )
    except ValidationError as error:
        return _render_issue(
            request,
            issue,
            status=400,
            errors={"convert": error.messages},
            values={"requester": request.POST.get("email", "")},
        )
    messages.success(
        request,
        _("This is now a Service Desk issue for %(external_author)s.")
        % {"external_author": issue.external_author},
    )
    return redirect(_issue_url(issue))


@login_required
@require_POST
def issue_move_view(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    """Move to another project where the user is Reporter+ (SPEC §10); then show the copy."""
    issue = _issue_for(request, full_path, iid)
    if not permissions.can_move_issue(request.user, issue):
        raise PermissionDenied
    targets = {p.pk: p for p in issue_move_targets(user=request.user, issue=issue)}
    form = MoveForm(request.POST)
    form.fields["project"].choices = [(pk, p.full_path) for pk, p in targets.items()]
    try:
        if not form.is_valid():
            raise ValidationError(_form_errors(form))
        target = targets[form.cleaned_data["project"]]
        if not permissions.can_move_issue(request.user, issue, target):
            raise PermissionDenied
        moved = issue_move(issue=issue, user=request.user, target=target)
    except ValidationError as error:
        return _render_issue(request, issue, status=400, errors={"move": error.messages})
    moved_from = {"old": issue.reference, "new": moved.reference}
    messages.success(request, _("Moved from %(old)s to %(new)s.") % moved_from)
    return redirect(_issue_url(moved))


@anonymous_404_to_login
@require_GET
def upload_download(request: HttpRequest, upload_id: int, filename: str) -> HttpResponse:
    """Serve an upload to those who may read its issue; 404 for everyone else.

    Only raster images are shown inline; everything else (HTML, SVG, PDFs…) is a download, and
    nothing is sniffed, so an uploaded file can never run script on our origin.
    """
    upload = upload_get_for_user(user=request.user, upload_id=upload_id)
    if upload.filename != filename:
        raise Http404("No such file")
    return _file_response(upload)


@require_GET
def upload_by_token(request: HttpRequest, token: str, filename: str) -> HttpResponse:
    """A file linked from an email: the signed token stands in for a login."""
    return _file_response(upload_get_by_token(token=token, filename=filename))


def _file_response(upload: Upload) -> HttpResponse:
    inline = upload.content_type in INLINE_IMAGE_TYPES
    response = FileResponse(
        upload.file.open("rb"),
        as_attachment=not inline,
        filename=upload.filename,
        content_type=upload.content_type if inline else "application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@csrf_exempt  # RFC 8058 one-click POSTs come from mail providers; the key is the credential
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a confirmation (link scanners must not unsubscribe anyone); POST — the form's
    button or a one-click ``List-Unsubscribe=One-Click`` — unsubscribes. No login needed."""
    sent = (
        SentNotification.objects.select_related("participant", "issue", "issue__project")
        .filter(unsubscribe_token=token.lower())
        .first()
    )
    if sent is None or sent.participant is None:
        raise Http404("Unknown or expired unsubscribe link")
    context = {"issue": sent.issue, "email": sent.participant.email, "done": False}
    if request.method == "POST":
        participant_unsubscribe(participant=sent.participant, actor=support_bot())
        context["done"] = True
    return render(request, "issues/unsubscribe.html", context)


def _presence_context(
    request: HttpRequest, issue: Issue, *, seen: int, rendering: bool = False
) -> dict[str, object]:
    """Who else has the issue open, and what was written since note ``seen`` (the newest the
    page showed; nothing yet while ``rendering`` that page), for the issue page's presence bar."""
    since = [] if rendering else notes_public_since(user=request.user, issue=issue, after=seen)
    return {
        "others": presence_others(issue_id=issue.pk, user=request.user),  # type: ignore[arg-type]
        "since": since,
        "seen": seen,
        "poll_seconds": presence_poll_seconds(),
    }


@login_required
@require_POST
def issue_presence(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    """The open issue page's heartbeat (htmx, every few seconds): record that this member is
    here and whether they are writing, answer with who else is and what arrived since."""
    issue = _issue_for(request, full_path, iid)
    if not permissions.can_add_internal_note(request.user, issue):
        raise PermissionDenied
    writing = request.POST.get("writing", "")
    presence_touch(
        issue_id=issue.pk,
        user=request.user,  # type: ignore[arg-type]
        writing=writing if writing in ("reply", "internal") else "",
    )
    seen = request.POST.get("seen", "")
    # Not a note id (or past any): nothing counts as new.
    after = int(seen) if seen.isdigit() and len(seen) < 19 else 2**62
    context = _presence_context(request, issue, seen=after)
    return render(
        request,
        "issues/_presence.html",
        {"project": issue.project, "issue": issue, "presence": context},
    )
