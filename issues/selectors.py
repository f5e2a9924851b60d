from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    F,
    Lookup,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Now
from django.http import Http404
from django.utils.translation import gettext, gettext_lazy

from accounts.models import SUPPORT_BOT_USERNAME, User
from projects.models import Membership, Project, Role
from projects.permissions import (
    ASSIGNABLE_ROLE,
    can_read_confidential_issues,
    can_read_internal_notes,
    can_read_issue,
    can_see_customer_emails,
)
from projects.selectors import projects_with_role

from .filters import NO_ASSIGNEE, NO_LABEL, IssueFilters, is_email_address
from .fts import match_query
from .models import (
    EmailParticipant,
    Issue,
    IssueCounter,
    Label,
    Note,
    OutboundEmail,
    Speaker,
    Upload,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.sql.compiler import SQLCompiler

    from projects.permissions import AnyUser

# --- The tracker (the project's issue list) -----------------------------------------------------
# A page of it costs the same queries whatever the number of issues, labels, assignees and
# notes: counts (1), the page's rows (1), their labels and assignees (1), the filter choices (2).


def _service_desk_issues() -> Q:
    """Issues that came by email: authored by the Support Bot, or converted by giving a
    requester. The bot's id is an uncorrelated subquery (PostgreSQL: an InitPlan, run once per
    statement by the username index), not a join of every issue to its author."""
    bot = User.objects.filter(username=SUPPORT_BOT_USERNAME).values("pk")[:1]
    return Q(author_id=Subquery(bot)) | ~Q(external_author="")


# "Waiting for us": issues whose last public word is the customer's (index issue_waiting) and
# are open, or were closed before the customer wrote (a project that does not reopen on a
# customer's reply): a reply never vanishes into a closed ticket.
WAITING_FOR_US = Q(last_public_by=Speaker.CUSTOMER) & (
    Q(state=Issue.State.OPENED) | Q(closed_at__lt=F("last_public_at"))
)
# Each order of the tracker as its sort keys: (field, descending, nullable). A page starts after
# (or ends before) the keys of a row: keyset pagination, which reads the index of the order from
# there instead of skipping every row before it (an OFFSET grows with the page's depth).
# ``waiting_rank``: 0 for an issue waiting for us, else 1 (annotated by ``issue_list_for_user``).
_SORT_KEYS: dict[str, tuple[tuple[str, bool, bool], ...]] = {
    "created_desc": (("created_at", True, False), ("id", True, False)),
    "created_asc": (("created_at", False, False), ("id", False, False)),
    "updated_desc": (("updated_at", True, False), ("id", True, False)),
    "updated_asc": (("updated_at", False, False), ("id", False, False)),
    "waiting": (
        ("waiting_rank", False, False),
        ("last_public_at", False, True),
        ("id", False, False),
    ),
    # ``response_due``: the response clock's due time (annotated; none: last).
    "due": (("response_due", False, True), ("id", False, False)),
}
_ORDERINGS: dict[str, tuple[Any, ...]] = {
    "created_desc": ("-created_at", "-id"),
    "created_asc": ("created_at", "id"),
    "updated_desc": ("-updated_at", "-id"),
    "updated_asc": ("updated_at", "id"),
    # Who waits longest first, then everything else (in any view: the order still means it).
    "waiting": (
        Case(When(WAITING_FOR_US, then=Value(0)), default=Value(1)),
        F("last_public_at").asc(nulls_last=True),
        "id",
    ),
    "due": (F("response_clock__due_at").asc(nulls_last=True), "id"),
}
# Snoozed tickets are out of the open views until they wake (issues.services.issue_snooze).
AWAKE = Q(snoozed_at__isnull=True)
_ISSUE_NUMBER = re.compile(r"#?(\d{1,9})")


@dataclass(frozen=True)
class FilterChoices:
    """What the filter form offers: the project's labels, and the people who authored or are
    assigned to an issue the user can see (so a Guest never learns who works on confidential
    ones)."""

    labels: list[Label]
    authors: list[User]
    assignees: list[User]


@dataclass(frozen=True)
class IssueRow:
    issue: Issue  # annotated with ``note_count``, and ``internal_note_count`` for Reporter+
    labels: list[Label]
    assignees: list[User]

    @property
    def internal_notes(self) -> int:
        """Internal notes: counted only for those who may read them."""
        return getattr(self.issue, "internal_note_count", 0)

    @property
    def comments(self) -> int:
        """Comments anyone who can read the issue sees (no system notes, no internal ones)."""
        return self.issue.note_count - self.internal_notes  # type: ignore[attr-defined,no-any-return]


@dataclass(frozen=True)
class Tracker:
    filters: IssueFilters
    counts: dict[str, int]
    page: TrackerPage  # of IssueRow
    choices: FilterChoices

    @property
    def unlisted(self) -> dict[str, str]:
        """Filter values no choice offers (a stale link, a label since deleted): the form shows
        them as they are, and they still filter."""
        offered = {
            "label": {label.title for label in self.choices.labels} | {NO_LABEL},
            "author": {person.username for person in self.choices.authors},
            "assignee": {person.username for person in self.choices.assignees} | {NO_ASSIGNEE},
        }
        chosen = {
            # The first label is the form's select; the others show as ticked boxes.
            "label": self.filters.labels[0] if self.filters.labels else "",
            "author": self.filters.author,
            "assignee": self.filters.assignee,
        }
        return {key: value for key, value in chosen.items() if value and value not in offered[key]}


@dataclass(frozen=True)
class Counted:
    """What the page's summary and the bulk edit ask of a paginator: the number of rows."""

    count: int


@dataclass(frozen=True)
class TrackerPage:
    """One page of the tracker, found by keyset (``_SORT_KEYS``): the rows after or before a
    cursor (the ``page`` parameter), with the cursors of the next and previous pages. A cursor
    holds the keys of the row it starts after (``a``) or ends before (``b``), and the position
    of the page's first row for the "51-100 of 75 000" summary."""

    object_list: list[Any]
    paginator: Counted
    start: int  # the 1-based position of the first row
    next_cursor: str
    previous_cursor: str

    def has_next(self) -> bool:
        return bool(self.next_cursor)

    def has_previous(self) -> bool:
        return bool(self.previous_cursor)

    def has_other_pages(self) -> bool:
        return self.has_next() or self.has_previous()

    def start_index(self) -> int:
        return self.start if self.object_list else 0

    def end_index(self) -> int:
        return self.start + len(self.object_list) - 1


def _cursor(
    direction: str, position: int, issue: Issue, keys: Iterable[tuple[str, bool, bool]]
) -> str:
    values = []
    for field, _, _ in keys:
        value = getattr(issue, field)
        values.append(
            ""
            if value is None
            else value.isoformat()
            if hasattr(value, "isoformat")
            else str(value)
        )
    return "~".join([f"{direction}{position}", *values])


def _parse_cursor(
    cursor: str | None, keys: tuple[tuple[str, bool, bool], ...]
) -> tuple[str, int, list[Any]] | None:
    """``(direction, position, values)`` of a cursor, or None for anything else (no cursor, a
    page number from an old link, a cursor of another order): the first page."""
    parts = (cursor or "").split("~")
    if len(parts) != len(keys) + 1 or parts[0][:1] not in ("a", "b"):
        return None
    values: list[Any] = []
    try:
        position = max(int(parts[0][1:]), 1)
        for (field, _, nullable), text in zip(keys, parts[1:], strict=True):
            if text == "" and nullable:
                values.append(None)
            elif field.endswith("_at"):
                moment = datetime.fromisoformat(text)
                if moment.tzinfo is None:
                    return None
                values.append(moment)
            else:
                values.append(int(text))
    except ValueError:
        return None
    return parts[0][0], position, values


def _beyond(keys: tuple[tuple[str, bool, bool], ...], values: list[Any], *, forward: bool) -> Q:
    """The rows after (``forward``) or before the row whose keys are ``values``, in the order
    of ``keys``; a nullable key sorts its NULLs last."""
    found, same = Q(pk__in=[]), Q()
    for (field, descending, nullable), value in zip(keys, values, strict=True):
        larger = forward != descending  # the next rows have a larger value
        if value is None:  # only a nullable key: NULL is the last value
            step = Q(pk__in=[]) if forward else Q(**{f"{field}__isnull": False})
            equal = Q(**{f"{field}__isnull": True})
        else:
            step = Q(**{f"{field}__{'gt' if larger else 'lt'}": value})
            if nullable and forward:
                step |= Q(**{f"{field}__isnull": True})
            equal = Q(**{field: value})
        found |= same & step
        same &= equal
    field, descending, nullable = keys[0]
    if values[0] is not None and not nullable:
        # Implied by the above, but an index reads only a range it is told: from the value on.
        larger = forward != descending
        found &= Q(**{f"{field}__{'gte' if larger else 'lte'}": values[0]})
    return found


def _ordering(keys: tuple[tuple[str, bool, bool], ...], *, forward: bool) -> list[Any]:
    order = []
    for field, descending, nullable in keys:
        column = F(field)
        if descending == forward:
            order.append(column.desc(nulls_first=True) if nullable else column.desc())
        else:
            order.append(column.asc(nulls_last=True) if nullable else column.asc())
    return order


def _keyset_page(
    issues: QuerySet[Issue], *, sort: str, cursor: str | None, per_page: int, count: int
) -> TrackerPage:
    """The page of ``issues`` that ``cursor`` names: one query (per_page + 1 rows, to know
    whether there is a next page), whatever the page's depth."""
    keys = _SORT_KEYS.get(sort, _SORT_KEYS["created_desc"])
    parsed = _parse_cursor(cursor, keys)
    direction, position, values = parsed or ("a", 1, None)
    forward = direction == "a"
    if values is not None:
        issues = issues.filter(_beyond(keys, values, forward=forward))
    rows = list(issues.order_by(*_ordering(keys, forward=forward))[: per_page + 1])
    more = len(rows) > per_page
    rows = rows[:per_page]
    if not forward:
        rows.reverse()
        position = max(position, 1)
    if not rows:
        return TrackerPage([], Counted(count), 1, "", "")
    earlier = (values is not None) if forward else more
    later = more if forward else True
    previous_start = max(position - per_page, 1)
    return TrackerPage(
        object_list=rows,
        paginator=Counted(count),
        start=position,
        next_cursor=_cursor("a", position + len(rows), rows[-1], keys) if later else "",
        previous_cursor=_cursor("b", previous_start, rows[0], keys) if earlier else "",
    )


def _visible_issues(*, user: AnyUser, project: Project) -> QuerySet[Issue]:
    issues = Issue.objects.filter(project=project)
    if not can_read_confidential_issues(user, project):
        issues = issues.filter(confidential=False)
    return issues


def _document_matches(table: str, text: str) -> RawSQL:
    """The stored full-text vector of ``table``'s row (``search_vector``, a generated column of
    migration 0014 with a GIN index; not a model field, SQLite has none) matches ``text`` read
    as a web search (``websearch_to_tsquery``: any text is valid, quotes make a phrase, ``-``
    excludes, ``or`` is an alternative; nothing typed can be a syntax error). The column is
    named with its table: a note's query joins the issues, which have one too. Priced with
    ``servicedesk_text_read`` as ``_StartsAWord`` is, so a common word still asks the index."""
    return RawSQL(  # noqa: S611 (``table`` is ours, ``text`` a parameter)
        f'("{table}"."search_vector" @@ websearch_to_tsquery(%s::regconfig, %s)'
        f' AND servicedesk_text_read("{table}"."search_vector" IS NULL))',
        (settings.SERVICEDESK_SEARCH_CONFIG, text),
        output_field=BooleanField(),
    )


def _escaped(text: str) -> str:
    """``text`` as a regular expression that matches it literally, in both dialects we speak:
    Python's ``re`` (SQLite's REGEXP) and PostgreSQL's ARE. Each ASCII character that is not a
    letter or digit gets a backslash, which both read as "this character itself" (a backslash
    before a letter or digit would be an escape like ``\\w``, so those are left alone)."""
    return "".join("\\" + char if char.isascii() and not char.isalnum() else char for char in text)


class _StartsAWord(Lookup):  # type: ignore[type-arg]
    """The column has a word that starts with the text (case-insensitive): ``hank`` finds
    "Hank's" but not "Thanks", ``inven`` finds "inventory" (the list updates as one types).
    Used as an expression, never registered: ``issues.filter(_StartsAWord(F("title"), text))``.

    The text is escaped (``_escaped``) and the search is cut to SEARCH_MAX_LENGTH, so the match
    is a literal after one look-behind, whatever is typed: at worst the text's length times the
    search's (0.35 s for 1.2 MB of "a a a …" against 200 characters of "a a … b", in Python)."""

    lookup_name = "starts_a_word"
    prepare_rhs = False

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, Any]:
        # SQLite (and any other backend): Django's REGEXP, which is Python's re.search.
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} REGEXP %s", [*params, rf"(?i)(?<!\w){_escaped(self.rhs)}"]

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, Any]:
        # ``UPPER(col::text)``: the very expression of migration 0008's pg_trgm indexes, which
        # answer regular expressions too. Both sides upper-cased by PostgreSQL, as icontains
        # does, so the database's idea of case applies to both.
        # ``servicedesk_text_read``: the price of reading the text (migration 0014), so that
        # PostgreSQL asks the index even for a common word.
        lhs, params = self.process_lhs(compiler, connection)
        sql = f"(UPPER({lhs}::text) ~ (%s || UPPER(%s)) AND servicedesk_text_read({lhs} IS NULL))"
        return sql, [*params, r"(?<!\w)", _escaped(self.rhs), *params]


def _words(text: str, *columns: str) -> Q:
    """Any of ``columns`` has a word starting with ``text``."""
    found = Q()
    for column in columns:
        found |= Q(_StartsAWord(F(column), text))
    return found


def _indexed(fts: str, text: str) -> Q:
    """SQLite: the rows whose FTS5 index (issues/fts.py) has the text's words as a phrase, a
    superset of those ``_words`` finds, which it narrows to (the index reads no regular
    expressions). Elsewhere, or for a text without words: every row (PostgreSQL's pg_trgm
    indexes answer ``_words`` themselves)."""
    query = match_query(text) if connection.vendor == "sqlite" else None
    if query is None:
        return Q()
    return Q(
        pk__in=RawSQL(  # noqa: S611 (``fts`` is ours, the query a parameter)
            f"SELECT rowid FROM {fts} WHERE {fts} MATCH %s",  # noqa: S608
            (query,),
        )
    )


def _requester_is(address: str) -> Q:
    """The issue's requester wrote from ``address``, or has their replies sent there."""
    return Q(external_author__iexact=address) | Q(service_desk_reply_to__iexact=address)


def _customer_arms(*, project: Project, text: str) -> list[QuerySet[Any]]:
    """The search among customers' addresses and participants' names: Reporter+ only (they
    are not on the page below Reporter, and a match would tell who wrote in). An address finds
    the issues it is the requester or a participant of, or sent a note to; other text finds
    addresses that start with it (``finn`` finds finn@customer.example) and participants'
    names."""
    issues = Issue.objects.filter(project=project).order_by()
    participants = EmailParticipant.objects.filter(issue__project=project).order_by()
    notes = Note.objects.filter(issue__project=project, system=False).order_by()
    if is_email_address(text):
        return [
            issues.filter(_requester_is(text)).values_list("pk", flat=True),
            participants.filter(email__iexact=text).values_list("issue_id", flat=True),
            notes.filter(external_author__iexact=text).values_list("issue_id", flat=True),
        ]
    starts = Q(external_author__istartswith=text) | Q(service_desk_reply_to__istartswith=text)
    return [
        issues.filter(starts).values_list("pk", flat=True),
        participants.filter(Q(email__istartswith=text) | _words(text, "name")).values_list(
            "issue_id", flat=True
        ),
        notes.filter(external_author__istartswith=text).values_list("issue_id", flat=True),
    ]


def issue_search_matches(*, user: AnyUser, project: Project, search: str) -> QuerySet[Any]:
    """The ids of the project's issues the user may see that match ``search`` (the words,
    without ``requester:`` tokens) in their title or description, or in a comment the user may
    read (internal notes for Reporter+ only: search must not leak what the page would hide).
    One query, on this project's rows only.

    Words match at the start of a word, never inside one (``crash`` finds "crashes", ``hank``
    does not find "Thanks"), in the text and in customers' names as the page shows them. On
    PostgreSQL full-text search is added: stemmed words, web-search syntax (``"exact phrase"``,
    ``-word``, ``or``). Both are indexed there (pg_trgm, which answers the regular expressions
    and the addresses: migrations 0008 and 0014; the stored vectors of 0014 and their GIN
    indexes). ``#12`` or ``12`` also
    finds issue 12. Customers' addresses are searched for Reporter+ only (``_customer_arms``).

    The issues' own text is one arm of a UNION, the notes' another, the customers' addresses
    others: PostgreSQL reads each table's rows once, asking every index of the arm's columns
    and ORing their answers."""
    text = search.strip()
    issues = _visible_issues(user=user, project=project).order_by()
    notes = Note.objects.filter(issue__project=project, system=False).order_by()
    if not can_read_confidential_issues(user, project):
        notes = notes.filter(issue__confidential=False)
    if not can_read_internal_notes(user, project):
        notes = notes.filter(internal=False)
    in_issue = (_words(text, "title", "description") & _indexed("issues_issue_fts", text)) | (
        _words(text, "external_author_name")
    )
    in_note = (_words(text, "body") & _indexed("issues_note_fts", text)) | (
        _words(text, "external_name")
    )
    if connection.vendor == "postgresql":
        in_issue |= Q(_document_matches("issues_issue", text))
        in_note |= Q(_document_matches("issues_note", text))
    # One arm per table: PostgreSQL ORs the indexes' bitmaps and reads each matching row once
    # (an arm per column read the same rows once per column: twice for a common word that is
    # in the title and its stem in the stored vector, 14 000 scattered rows each time).
    arms = [
        issues.filter(in_issue).values_list("pk", flat=True),
        notes.filter(in_note).values_list("issue_id", flat=True),
    ]
    if number := _ISSUE_NUMBER.fullmatch(text):
        arms.append(issues.filter(iid=int(number[1])).values_list("pk", flat=True))
    if can_see_customer_emails(user, project):
        arms += _customer_arms(project=project, text=text)
    first, *others = arms
    return first.union(*others)


class _AnyOf(Lookup):  # type: ignore[type-arg]
    """PostgreSQL: the column is one of the ids, sent as ONE array (``= ANY(%s::bigint[])``).
    Used as an expression: ``Q(_AnyOf(F("pk"), ids))``."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, Any]:
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s::bigint[])", [*params, list(self.rhs)]


def _among(ids: list[int]) -> Q:
    """``pk IN ids`` with the ids as ONE parameter, however many match: a search that matches
    every issue of a large project must not become a statement with thousands of parameters
    (SQLite takes at most 32 766)."""
    if not ids:
        return Q(pk__in=[])
    if connection.vendor == "postgresql":
        # ``= ANY(array)``, not ``IN (SELECT unnest(array))``: the planner sees how many ids
        # there are, so 14 000 of them walk the sort order's index to the page's 20 rows
        # (7 ms at 100 000 issues), while five are looked up by primary key; behind unnest it
        # guessed 200 and fetched and sorted every matching row (57 ms).
        return Q(_AnyOf(F("pk"), ids))
    if connection.vendor == "sqlite":
        return Q(pk__in=RawSQL("SELECT value FROM json_each(%s)", (json.dumps(ids),)))
    return Q(pk__in=ids)


def _narrow(
    *, user: AnyUser, project: Project, filters: IssueFilters, matching: list[int] | None
) -> QuerySet[Issue]:
    """The issues the user may see, under every filter except the state tab and the view (the
    counts vary those).

    ``matching``: the search's issue ids (``issue_search_matches``), found once for both the
    rows and the counts; None: found here. Labels and assignees are matched with EXISTS, not a
    join, so no row is ever repeated.
    """
    issues = _visible_issues(user=user, project=project)
    if filters.words:
        if matching is None:
            matching = list(issue_search_matches(user=user, project=project, search=filters.words))
        issues = issues.filter(_among(matching))
    for address in filters.requesters:
        # Below Reporter an address finds nothing: the list must not tell who wrote in.
        if not can_see_customer_emails(user, project):
            return issues.none()
        issues = issues.filter(_requester_is(address))
    label_links = Issue.labels.through.objects.filter(issue=OuterRef("pk"))
    for title in filters.labels:  # all of them: one EXISTS each
        if title == NO_LABEL:
            issues = issues.exclude(Exists(label_links))
        else:
            issues = issues.filter(Exists(label_links.filter(label__title=title)))
    if filters.author:
        issues = issues.filter(author__username=filters.author)
    assignee_links = Issue.assignees.through.objects.filter(issue=OuterRef("pk"))
    if filters.assignee == NO_ASSIGNEE:
        issues = issues.exclude(Exists(assignee_links))
    elif filters.assignee:
        issues = issues.filter(Exists(assignee_links.filter(user__username=filters.assignee)))
    if filters.confidential is not None:
        issues = issues.filter(confidential=filters.confidential)
    return issues


def _views(user: AnyUser) -> dict[str, Q]:
    """Each view of the tracker (``filters.VIEWS``) as a condition on the issues."""
    assignee_links = Issue.assignees.through.objects.filter(issue=OuterRef("pk"))
    return {
        "": Q(),
        "service_desk": _service_desk_issues(),
        "waiting": WAITING_FOR_US & AWAKE,
        # An anonymous visitor's pk is None: ``user_id IS NULL`` holds for no assignment.
        "mine": Q(Exists(assignee_links.filter(Q(user_id=user.pk)))),
        "unassigned": ~Q(Exists(assignee_links)),
        # A running response clock the sweep has warned about, or past its due time
        # (sla.services.clocks_sweep); a snoozed ticket's clock is paused (no due time).
        "breaching": Q(response_clock__due_at__isnull=False)
        & (Q(response_clock__warned_at__isnull=False) | Q(response_clock__due_at__lte=Now())),
        "snoozed": ~AWAKE,
    }


def _in_state(state: str, view: str) -> Q:
    """The state tab's condition: the Open tab leaves snoozed tickets out, except in the view
    that lists them."""
    if state == "opened":
        return Q(state=state) & (AWAKE if view != "snoozed" else Q())
    if state == "closed":
        return Q(state=state)
    return Q()


def issue_list_for_user(
    *,
    user: AnyUser,
    project: Project,
    filters: IssueFilters | None = None,
    matching: list[int] | None = None,
) -> QuerySet[Issue]:
    """Issues of ``project`` the user may see, filtered and sorted, each with a ``note_count``:
    its comments, without system notes, and without internal notes for those who may not read
    them (below Reporter). Confidential issues are left out below Reporter. ``matching``: the
    search's ids when the caller already found them."""
    filters = filters or IssueFilters()
    issues = _filtered(user=user, project=project, filters=filters, matching=matching)
    notes = Note.objects.filter(issue=OuterRef("pk"), system=False)
    internal = can_read_internal_notes(user, project)
    if not internal:
        notes = notes.filter(internal=False)
    # Subqueries, not COUNT over a join (which needs a GROUP BY on every column): PostgreSQL
    # runs them only for the page's rows, after the sort and LIMIT (EXPLAIN: SubPlan loops=50).
    note_count = notes.order_by().values("issue").annotate(n=Count("pk")).values("n")
    issues = issues.select_related("author", "response_clock").annotate(
        note_count=Coalesce(Subquery(note_count), 0)
    )
    if internal:
        internal_notes = notes.filter(internal=True).order_by().values("issue")
        internal_count = internal_notes.annotate(n=Count("pk")).values("n")
        issues = issues.annotate(internal_note_count=Coalesce(Subquery(internal_count), 0))
    if filters.sort == "waiting":
        issues = issues.annotate(
            waiting_rank=Case(When(WAITING_FOR_US, then=Value(0)), default=Value(1))
        )
    if filters.sort == "due":
        issues = issues.annotate(response_due=F("response_clock__due_at"))
    keys = _SORT_KEYS.get(filters.sort, _SORT_KEYS["created_desc"])
    return issues.order_by(*_ordering(keys, forward=True))


def _filtered(
    *, user: AnyUser, project: Project, filters: IssueFilters, matching: list[int] | None
) -> QuerySet[Issue]:
    """The issues the list shows: the filters, the view and the state tab."""
    issues = _narrow(user=user, project=project, filters=filters, matching=matching)
    issues = issues.filter(_views(user).get(filters.view, Q()))
    return issues.filter(_in_state(filters.state, filters.view))


def issues_for_bulk_edit(
    *,
    user: AnyUser,
    project: Project,
    limit: int,
    iids: list[int] | None = None,
    filters: IssueFilters | None = None,
) -> tuple[list[Issue], int]:
    """The issues a bulk edit names — by number (``iids``), or every one the tracker lists
    under ``filters`` — that the user may see, at most ``limit`` of them in the tracker's order,
    and how many there are in all. Two queries (the count, the rows) whatever their number,
    three with a search (its matches); each issue carries ``project``, so asking for
    permissions costs no more."""
    if iids is not None:
        issues = _visible_issues(user=user, project=project).filter(iid__in=iids)
        order = _ORDERINGS["created_desc"]
    else:
        filters = filters or IssueFilters()
        issues = _filtered(user=user, project=project, filters=filters, matching=None)
        order = _ORDERINGS.get(filters.sort, _ORDERINGS["created_desc"])
    total = issues.count()
    chosen = list(issues.order_by(*order)[:limit])
    for issue in chosen:
        issue.project = project
    return chosen, total


def _counts_fingerprint(project: Project) -> dict[str, Any]:
    """What changes whenever a count of the project's tracker may: the last iid handed out (a
    new issue) and the latest ``updated_at`` (every change of an issue's state, labels,
    assignees, confidentiality or conversation bumps it, through a note or a save). Two index
    lookups, as expressions of one statement."""
    newest = Issue.objects.filter(project=project).order_by("-updated_at").values("updated_at")
    counter = IssueCounter.objects.filter(project=project).values("last_iid")
    return {"newest": Max(Subquery(newest[:1])), "last_iid": Max(Subquery(counter[:1]))}


def _counts_key(*, user: AnyUser, project: Project, filters: IssueFilters) -> str:
    """The cache key of the counts as ``user`` sees them under ``filters`` (the sort order
    aside): "mine" is theirs, and confidential issues count only for those who may read them."""
    wanted = replace(filters, sort="")
    digest = hashlib.sha256(repr(wanted).encode()).hexdigest()[:32]
    confidential = int(can_read_confidential_issues(user, project))
    return f"tracker-counts:{project.pk}:{user.pk}:{confidential}:{digest}"


def issue_counts_for_user(
    *,
    user: AnyUser,
    project: Project,
    filters: IssueFilters | None = None,
    matching: list[int] | None = None,
) -> dict[str, int]:
    """One query. ``opened``/``closed``/``all``: the state tabs, in the current view; one count
    per view (``issues`` for all of them, then ``service_desk``, ``waiting``, ``mine``,
    ``unassigned``), in the current state. All under the filters. "Waiting for us" says
    itself which states it holds, so its count is the same whatever the state tab (its tab
    opens on every state). ``matching``: the search's ids when the caller already found them.

    Counting reads every issue the filters select, so in a project where that is at least
    SERVICEDESK_TRACKER_COUNTS_CACHE_MIN issues the counts are kept in the cache with the
    project's fingerprint (``_counts_fingerprint``), and the next page asks only for the
    fingerprint: the counts are read again when an issue was added or changed, and at the
    latest after SERVICEDESK_TRACKER_COUNTS_CACHE_SECONDS."""
    filters = filters or IssueFilters()
    key = _counts_key(user=user, project=project, filters=filters)
    fingerprint = _counts_fingerprint(project)
    try:
        cached = cache.get(key)
    except Exception:  # the cache is down: count, the page still works
        log.warning("tracker counts cache unavailable", exc_info=True)
        cached = None
    if cached is not None:
        now = Project.objects.filter(pk=project.pk).aggregate(**fingerprint)  # one row
        if cached["fingerprint"] == now:
            return cached["counts"]  # type: ignore[no-any-return]
    issues = _narrow(user=user, project=project, filters=filters, matching=matching)
    views = _views(user)
    in_view = views.get(filters.view, Q())
    per_view = {
        "issues" if view == "" else view: Count(
            "pk",
            filter=(condition if view == "waiting" else _in_state(filters.state, view) & condition)
            or None,
        )
        for view, condition in views.items()
    }
    found = issues.order_by().aggregate(
        opened=Count("pk", filter=_in_state("opened", filters.view) & in_view),
        closed=Count("pk", filter=Q(state="closed") & in_view),
        all=Count("pk", filter=in_view or None),
        **per_view,
        **fingerprint,
    )
    now = {name: found.pop(name) for name in fingerprint}
    if max(found.values()) >= settings.SERVICEDESK_TRACKER_COUNTS_CACHE_MIN:
        timeout = settings.SERVICEDESK_TRACKER_COUNTS_CACHE_SECONDS
        try:
            cache.set(key, {"fingerprint": now, "counts": found}, timeout)
        except Exception:
            log.warning("tracker counts cache unavailable", exc_info=True)
    return found  # type: ignore[no-any-return]


# The people of the filter form, without reading the project's issues: each id set is a
# "skip scan" (a recursive CTE that asks an index for the next larger id, once per person:
# ``issue_author_choices`` for authors, the link table's user index for assignees), so its
# cost grows with the number of people, not of issues. PostgreSQL and SQLite read it alike.
# Whether someone is assigned in this project is asked only of people assigned somewhere (a
# CASE: PostgreSQL does not promise to test the two sides of an AND in the order written):
# asked of an author who never is (the Support Bot, a Guest), it reads every issue of the
# project to find nothing (26 ms of a 10 000-issue tracker's page; 0.9 ms for the query now).
_PEOPLE_SQL = """
WITH RECURSIVE authors(confidential, id) AS (
    {seeds}
    UNION ALL
    SELECT a.confidential, (
        SELECT MIN(i.author_id) FROM issues_issue i
        WHERE i.project_id = %s AND i.confidential = a.confidential AND i.author_id > a.id
    ) FROM authors a WHERE a.id IS NOT NULL
), assigned(id) AS (
    SELECT MIN(user_id) FROM issues_issue_assignees
    UNION ALL
    SELECT (SELECT MIN(l.user_id) FROM issues_issue_assignees l WHERE l.user_id > s.id)
    FROM assigned s WHERE s.id IS NOT NULL
)
SELECT u.*, u.id IN (SELECT id FROM authors) AS is_author,
CASE WHEN u.id IN (SELECT id FROM assigned) THEN EXISTS (
    SELECT 1 FROM issues_issue_assignees l INNER JOIN issues_issue i ON i.id = l.issue_id
    WHERE l.user_id = u.id AND i.project_id = %s{visible}
) ELSE false END AS is_assignee
FROM accounts_user u
WHERE u.id IN (SELECT id FROM authors) OR u.id IN (SELECT id FROM assigned)
ORDER BY u.username
"""
_AUTHOR_SEED = (
    "SELECT %s, (SELECT MIN(author_id) FROM issues_issue"
    " WHERE project_id = %s AND confidential = %s)"
)


def issue_filter_choices_for_user(*, user: AnyUser, project: Project) -> FilterChoices:
    """Two queries: the project's labels; the authors and assignees of issues the user sees
    (confidential ones only for those who may read them), found by index (``_PEOPLE_SQL``)."""
    labels = list(Label.objects.filter(project=project).order_by("title"))
    kinds = [False, True] if can_read_confidential_issues(user, project) else [False]
    sql = _PEOPLE_SQL.format(
        seeds="\n    UNION ALL\n    ".join(_AUTHOR_SEED for _ in kinds),
        visible="" if len(kinds) == 2 else " AND NOT i.confidential",
    )
    params: list[Any] = [value for kind in kinds for value in (kind, project.pk, kind)]
    people = list(User.objects.raw(sql, [*params, project.pk, project.pk]))
    return FilterChoices(
        labels=labels,
        authors=[person for person in people if person.is_author],  # type: ignore[attr-defined]
        assignees=[person for person in people if person.is_assignee],  # type: ignore[attr-defined]
    )


def _rows(issues: list[Issue], choices: FilterChoices) -> list[IssueRow]:
    """The rows with their labels and assignees, in ONE query over both link tables: the
    label and user objects themselves are already in the filter choices."""
    if not issues:
        return []
    ids = [issue.pk for issue in issues]
    label_links = Issue.labels.through.objects.filter(issue_id__in=ids).values_list(
        "issue_id", "label_id", Value("label")
    )
    assignee_links = Issue.assignees.through.objects.filter(issue_id__in=ids).values_list(
        "issue_id", "user_id", Value("assignee")
    )
    labels = {label.pk: label for label in choices.labels}
    people = {person.pk: person for person in choices.assignees}
    found: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for issue_id, other_id, kind in label_links.union(assignee_links, all=True):
        other = labels.get(other_id) if kind == "label" else people.get(other_id)
        if other is not None:
            found[issue_id, kind].append(other)
    return [
        IssueRow(
            issue=issue,
            labels=sorted(found[issue.pk, "label"], key=lambda label: label.title.lower()),
            assignees=sorted(found[issue.pk, "assignee"], key=lambda user: user.username),
        )
        for issue in issues
    ]


def issue_tracker_for_user(
    *,
    user: AnyUser,
    project: Project,
    filters: IssueFilters,
    page_number: str | int | None,
    per_page: int,
) -> Tracker:
    """Everything the issue list shows, in five queries whatever the number of issues (six with
    a search: its matches are found once, then the counts and the rows both use them).
    ``page_number``: the page's cursor (``TrackerPage``); anything else is the first page."""
    matching = None
    if filters.words:
        matching = list(issue_search_matches(user=user, project=project, search=filters.words))
    counts = issue_counts_for_user(user=user, project=project, filters=filters, matching=matching)
    choices = issue_filter_choices_for_user(user=user, project=project)
    issues = issue_list_for_user(user=user, project=project, filters=filters, matching=matching)
    page = _keyset_page(
        issues,
        sort=filters.sort,
        cursor=str(page_number) if page_number else None,  # a page number: the first page
        per_page=per_page,
        count=counts[filters.state],
    )
    rows = _rows(page.object_list, choices)
    return Tracker(
        filters=filters, counts=counts, page=replace(page, object_list=rows), choices=choices
    )


def issue_get_for_user(*, user: AnyUser, project: Project, iid: int) -> Issue:
    """The issue if the user may read it; 404 otherwise (confidential ones below Reporter)."""
    try:
        issue = (
            Issue.objects.select_related(
                "author", "closed_by", "moved_to__project", "merged_into", "response_clock"
            )
            .prefetch_related(
                Prefetch("labels", queryset=Label.objects.order_by("title")), "assignees"
            )
            .get(project=project, iid=iid)
        )
    except Issue.DoesNotExist:
        raise Http404("No such issue") from None
    issue.project = project  # keep the caller's instance and its cached permission state
    if not can_read_issue(user, issue):
        raise Http404("No such issue")
    return issue


def note_list_for_issue(*, user: AnyUser, issue: Issue) -> QuerySet[Note]:
    notes = Note.objects.filter(issue=issue).select_related("author", "merged_from")
    if not can_read_internal_notes(user, issue.project):
        notes = notes.filter(internal=False)
    return notes.order_by("created_at", "id")


def notes_public_since(*, user: AnyUser, issue: Issue, after: int) -> list[Note]:
    """Public messages others added to the thread after note ``after`` (the newest one a page
    showed): the customer's emails and teammates' public comments. Internal and system notes
    don't count: a reply written before them still answers the conversation as it stands."""
    return list(
        Note.objects.filter(issue=issue, pk__gt=after, internal=False, system=False)
        .exclude(author_id=user.pk)
        .select_related("author")
        .order_by("id")
    )


# --- The issue page ---------------------------------------------------------------------------
# Each of these is one query whatever the number of rows, so the page costs a fixed number.

# The system notes ``issue_move`` leaves on both issues; a moved thread carries earlier ones.
_MOVE_NOTE = re.compile(r"moved this issue (?P<direction>to|from) (?P<path>\S+)#(?P<iid>\d+)")


@dataclass(frozen=True)
class MoveNote:
    """A "moved this issue to/from …" system note as a viewer may see it: ``issue`` is the
    other issue, or None when they may not read it (or it is gone) — then the page says
    "another project", so a Guest never learns the path of a private project."""

    direction: str  # "to" or "from"
    issue: Issue | None


def move_notes_for_user(*, user: AnyUser, notes: list[Note]) -> dict[int, MoveNote]:
    """The thread's move notes by note id, each with the other issue when ``user`` may read it.
    No query for a thread without moves; otherwise one, plus the user's role in each project
    named (cached for the request)."""
    moves = {
        note.pk: match
        for note in notes
        if note.system and (match := _MOVE_NOTE.fullmatch(note.body))
    }
    if not moves:
        return {}
    wanted = Q()
    for match in moves.values():
        wanted |= Q(project__full_path=match["path"], iid=int(match["iid"]))
    found = {
        (issue.project.full_path, issue.iid): issue
        for issue in Issue.objects.select_related("project").filter(wanted)
    }
    result = {}
    for note_id, match in moves.items():
        other = found.get((match["path"], int(match["iid"])))
        readable = other is not None and can_read_issue(user, other)
        result[note_id] = MoveNote(match["direction"], other if readable else None)
    return result


def participant_list_for_issue(*, user: AnyUser, issue: Issue) -> list[EmailParticipant]:
    """The issue's email participants with their state; empty for those who may not see
    customer addresses (below Reporter)."""
    if not can_see_customer_emails(user, issue.project):
        return []
    return list(EmailParticipant.objects.filter(issue=issue).order_by("created_at", "id"))


@dataclass(frozen=True)
class Recipient:
    """A participant as the comment box shows them: "Jake Doe <jake@…>", and why not, if not."""

    participant: EmailParticipant
    reason: str = ""  # "unsubscribed", "bouncing"; empty when the reply will reach them

    @property
    def label(self) -> str:
        name, email = self.participant.name.strip(), self.participant.email
        return f"{name} <{email}>" if name else email


# Why a participant is not emailed, as the composer says it.
_RECIPIENT_REASONS = {
    "unsubscribed": gettext_lazy("unsubscribed"),
    "bouncing": gettext_lazy("bouncing"),
    "Service Desk is off": gettext_lazy("Service Desk is off"),
}


@dataclass(frozen=True)
class ReplyRecipients:
    """Who a public comment will be emailed to, worked out as ``emails.notes_added`` does:
    reachable participants, and nobody while the project's Service Desk is off."""

    emailed: list[Recipient]
    not_emailed: list[Recipient]
    service_desk_on: bool

    @property
    def any(self) -> bool:
        """The issue has participants at all: a reply to customers, not a plain comment."""
        return bool(self.emailed or self.not_emailed)

    @property
    def nobody(self) -> bool:
        """There are participants, yet none of them will receive a reply."""
        return self.any and not self.emailed

    @property
    def sentence(self) -> str:
        """ "Emailed to Jake Doe <jake@…>; not to finn@… (unsubscribed)." Empty while the
        Service Desk is off (the page warns instead)."""
        emailed = ", ".join(r.label for r in self.emailed)
        missed = ", ".join(
            f"{r.participant.email} ({_RECIPIENT_REASONS.get(r.reason, r.reason)})"
            for r in self.not_emailed
        )
        if not self.service_desk_on or not self.not_emailed:
            missed = ""
        if emailed and missed:
            return gettext("Emailed to %(emailed)s; not to %(missed)s.") % {
                "emailed": emailed, "missed": missed}  # fmt: skip
        if emailed:
            return gettext("Emailed to %(emailed)s.") % {"emailed": emailed}
        if missed:
            return gettext("Not emailed to %(missed)s.") % {"missed": missed}
        return ""


def reply_recipients(
    *, participants: Iterable[EmailParticipant], service_desk_on: bool
) -> ReplyRecipients:
    """From the participants the page already loaded (``participant_list_for_issue``): no
    query. Pass none to people who may not see addresses."""
    emailed, not_emailed = [], []
    for participant in participants:
        if participant.unsubscribed_at is not None:
            not_emailed.append(Recipient(participant, "unsubscribed"))
        elif participant.bouncing_at is not None:
            not_emailed.append(Recipient(participant, "bouncing"))
        elif not service_desk_on:
            not_emailed.append(Recipient(participant, "Service Desk is off"))
        else:
            emailed.append(Recipient(participant))
    return ReplyRecipients(emailed, not_emailed, service_desk_on)


def note_emailed_to(*, note: Note) -> list[str]:
    """The addresses a just-posted note was emailed to (its *new note* emails in the outbox),
    for the flash message; one query."""
    return list(
        OutboundEmail.objects.filter(note=note, kind=OutboundEmail.Kind.NEW_NOTE)
        .exclude(participant=None)
        .order_by("participant__created_at", "participant_id")
        .values_list("participant__email", flat=True)
    )


def label_list_for_project(*, project: Project) -> list[Label]:
    return list(Label.objects.filter(project=project).order_by("title"))


def assignable_users(*, project: Project) -> QuerySet[User]:
    """People who can be assigned to the project's issues: active members with
    ``ASSIGNABLE_ROLE`` or more, directly or through one of its groups."""
    members = Membership.objects.filter(
        Q(project=project) | Q(group__full_path__in=project.ancestor_group_paths),
        role__gte=ASSIGNABLE_ROLE,
    )
    return User.objects.filter(
        pk__in=members.values("user_id"), is_active=True, is_bot=False
    ).order_by("username")


def merge_target(*, issue: Issue, user: AnyUser, text: str) -> Issue:
    """The ticket of ``issue``'s project named ``#12`` (or ``12``) that ``user`` may merge
    ``issue`` into: one they can read and triage. ValidationError otherwise."""
    from projects.permissions import can_triage_issue

    number = text.strip().lstrip("#")
    if not number.isdigit() or len(number) > 9:
        raise ValidationError(gettext("Name the ticket by its number, like #12."))
    target = (
        Issue.objects.select_related("project")
        .filter(project=issue.project, iid=int(number))
        .first()
    )
    if target is None or not can_read_issue(user, target) or not can_triage_issue(user, target):
        raise ValidationError(
            gettext("There is no ticket #%(iid)s you may merge into.") % {"iid": number}
        )
    if target.pk == issue.pk:
        raise ValidationError(gettext("A ticket cannot be merged into itself."))
    return target


def issue_move_targets(*, user: AnyUser, issue: Issue) -> list[Project]:
    """The projects the user may move the issue to: Reporter+ there (SPEC §10), not its own.

    Two queries: the user's memberships, then the projects they cover. The move itself asks
    ``can_move_issue`` again.
    """
    projects = projects_with_role(user=user, minimum=Role.REPORTER).exclude(pk=issue.project_id)
    return list(projects.select_related("service_desk").order_by("full_path"))


def upload_get_for_user(*, user: AnyUser, upload_id: int) -> Upload:
    """An upload whose issue the user may read (internal notes' files: Reporter+); else 404."""
    try:
        upload = Upload.objects.select_related("issue", "issue__project", "note").get(pk=upload_id)
    except Upload.DoesNotExist:
        raise Http404("No such file") from None
    if upload.issue is None or not can_read_issue(user, upload.issue):
        raise Http404("No such file")
    if (
        upload.note is not None
        and upload.note.internal
        and not can_read_internal_notes(user, upload.issue.project)
    ):
        raise Http404("No such file")
    return upload


_FILE_LINK_SALT = "issues.upload-email-link"


def upload_email_token(upload: Upload) -> str:
    """A token for a link in an email: downloads this one file without login (the customer
    received it anyway), until SERVICEDESK_EMAIL_FILE_LINK_DAYS have passed."""
    return signing.TimestampSigner(salt=_FILE_LINK_SALT, sep=".").sign(str(upload.pk))


def upload_get_by_token(*, token: str, filename: str) -> Upload:
    """The upload an email link names; 404 for a forged, altered or expired token."""
    max_age = timedelta(days=settings.SERVICEDESK_EMAIL_FILE_LINK_DAYS)
    try:
        upload_id = int(
            signing.TimestampSigner(salt=_FILE_LINK_SALT, sep=".").unsign(token, max_age=max_age)
        )
        upload = Upload.objects.get(pk=upload_id, filename=filename)
    except (signing.BadSignature, ValueError, Upload.DoesNotExist):
        raise Http404("No such file, or the link has expired") from None
    return upload


# --- Customers ---------------------------------------------------------------------------------
# A customer is an email address. What they wrote in is Reporter+ information, so their pages
# and lists cover only the projects where the viewer is Reporter+.


def _customer_of(address: str) -> Q:
    """The issues ``address`` is the requester or an email participant of (a requester whose
    Reply-To differs is a participant with that address). Both sides are indexed
    (``issue_requester``, ``participant_email``): PostgreSQL reads just their issues, in
    every project at once."""
    requester = Issue.objects.filter(external_author__iexact=address).values("pk").order_by()
    participating = EmailParticipant.objects.filter(email__iexact=address).values("issue_id")
    # A UNION, not an OR: PostgreSQL cannot combine an index with a subquery's in one scan.
    return Q(pk__in=requester.union(participating.order_by()))


def customer_issues_for_user(*, user: AnyUser, address: str) -> QuerySet[Issue]:
    """The issues of ``address`` (requester or participant) in the projects where the user is
    Reporter+, newest first, each with its project. One query for the user's memberships now,
    then the caller's (a count, a page)."""
    projects = projects_with_role(user=user, minimum=Role.REPORTER)
    names = EmailParticipant.objects.filter(issue=OuterRef("pk"), email__iexact=address)
    return (
        Issue.objects.filter(project__in=projects)
        .filter(_customer_of(address))
        .select_related("project")
        # The name they wrote with as a participant (as a requester: ``external_author_name``).
        .annotate(participant_name=Subquery(names.exclude(name="").values("name")[:1]))
        .order_by("-created_at", "-id")
    )


def customer_recent_issues(*, user: AnyUser, issue: Issue, limit: int = 5) -> list[Issue]:
    """The requester's latest ``limit`` other issues, for the issue page's sidebar: the same
    rule as the customer page. Two queries (the user's memberships, the issues); none when the
    issue has no requester."""
    address = issue.external_author
    if not address:
        return []
    issues = customer_issues_for_user(user=user, address=address).exclude(pk=issue.pk)
    return list(issues[:limit])


def customer_name(*, issues: Iterable[Issue], address: str) -> str:
    """The name the customer last wrote with, among ``issues`` (newest first, from
    ``customer_issues_for_user``); empty if they never gave one."""
    for issue in issues:
        if issue.external_author.lower() == address and issue.external_author_name:
            return issue.external_author_name
        if issue.participant_name:  # type: ignore[attr-defined]
            return issue.participant_name  # type: ignore[attr-defined,no-any-return]
    return ""


# --- The outbound ledger ----------------------------------------------------------------------

OUTBOUND_LIST_FIELDS = (
    "id", "kind", "recipient", "subject", "status", "attempts", "next_attempt_at", "last_error",
    "created_at", "sent_at", "project__id", "project__full_path", "issue__id", "issue__iid",
    "issue__project__id", "issue__project__full_path", "note_id",
)  # fmt: skip
OUTBOUND_SEARCH_MAX_LENGTH = 200
REDACTED = "[redacted]"
# Invitations, password resets and address confirmations (accounts): their text is a secret.
ACCOUNT_KIND = "account"


@dataclass(frozen=True)
class OutboxFilters:
    """The outbound ledger's filters, from the query string; unknown values are ignored."""

    status: str = ""
    kind: str = ""
    query: str = ""

    @classmethod
    def from_query(cls, params: Any) -> OutboxFilters:
        status, kind = str(params.get("status", "")), str(params.get("kind", ""))
        return cls(
            status=status if status in OutboundEmail.Status.values else "",
            kind=kind if kind in OutboundEmail.Kind.values else "",
            query=str(params.get("q", "")).strip()[:OUTBOUND_SEARCH_MAX_LENGTH],
        )

    @property
    def active(self) -> bool:
        return bool(self.status or self.kind or self.query)


def outbound_list(*, project: Project | None, filters: OutboxFilters) -> QuerySet[OutboundEmail]:
    """The outbox, newest first: one project's emails, or every email (``project=None``)."""
    rows = OutboundEmail.objects.select_related("project", "issue__project").only(
        *OUTBOUND_LIST_FIELDS
    )
    if project is not None:
        rows = rows.filter(project=project)
    if filters.status:
        rows = rows.filter(status=filters.status)
    if filters.kind:
        rows = rows.filter(kind=filters.kind)
    if filters.query:
        rows = rows.filter(
            Q(subject__icontains=filters.query) | Q(recipient__icontains=filters.query)
        )
    return rows.order_by("-created_at", "-id")


def outbound_get(*, email_id: int, project: Project | None) -> OutboundEmail:
    """One email of this ledger; 404 if it is not in it."""
    rows = OutboundEmail.objects.select_related(
        "project", "issue__project", "sent_notification"
    ).defer("body_html")
    if project is not None:
        rows = rows.filter(project=project)
    email = rows.filter(pk=email_id).first()
    if email is None:
        raise Http404("No such email")
    return email


@dataclass(frozen=True)
class RedactedEmail:
    message_id: str
    headers: list[tuple[str, str]]
    body_text: str


def outbound_redacted(email: OutboundEmail) -> RedactedEmail:
    """The email as it may be shown: its reply key and unsubscribe token (anyone holding them
    could write into the issue as the recipient, or unsubscribe them) replaced by
    ``[redacted]`` in the Message-ID (``reply-<key>@…``, which replies quote), the headers
    (Reply-To, List-Unsubscribe, References) and the text."""
    secrets = []
    if email.sent_notification is not None:
        secrets = [email.sent_notification.reply_key, email.sent_notification.unsubscribe_token]

    def scrub(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return text

    headers = [(name, scrub(str(value))) for name, value in (email.headers or {}).items()]
    body = scrub(email.body_text)
    if email.kind == ACCOUNT_KIND:
        body = "(Not shown: it holds a one-time link to sign in or confirm an address.)"
    return RedactedEmail(message_id=scrub(email.message_id), headers=headers, body_text=body)


def note_deliveries(*, notes: list[Note]) -> dict[int, list[OutboundEmail]]:
    """The emails each of these notes caused to customers (not the team's notifications), by
    note id, in the order they were recorded: one query."""
    ids = [note.pk for note in notes if not note.internal and not note.system]
    found: dict[int, list[OutboundEmail]] = defaultdict(list)
    if not ids:
        return found
    rows = (
        OutboundEmail.objects.filter(note_id__in=ids)
        .exclude(kind=OutboundEmail.Kind.TEAM)
        .only("id", "note_id", "recipient", "status", "next_attempt_at", "last_error", "sent_at")
        .order_by("id")
    )
    for email in rows:
        found[email.note_id].append(email)  # type: ignore[index]
    return found
