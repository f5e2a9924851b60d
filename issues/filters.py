"""The tracker's filters: what the GET form on the issue list may ask for.

The form only parses; ``issues.selectors`` applies the result. A value that does not parse
(a stale bookmark, a hand-edited URL) is dropped rather than answered with an error: the list
then shows what the remaining filters select.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

STATES = {"opened": _("Open"), "closed": _("Closed"), "all": _("All")}
# The views: each a preset selection beside the state tabs (the filters narrow any of them).
# No name shares a word with a state tab ("All issues" beside "All" reads as either of them);
# "Waiting for us" holds open issues only, but says so in its title.
VIEWS = {
    "": _("Everything"),
    "service_desk": _("Service Desk"),
    "waiting": _("Waiting for us"),
    "mine": _("Assigned to me"),
    "unassigned": _("Unassigned"),
    "breaching": _("Breaching soon"),
    "snoozed": _("Snoozed"),
}
SORTS = {
    "created_desc": _("Newest"),
    "created_asc": _("Oldest"),
    "updated_desc": _("Recently updated"),
    "updated_asc": _("Least recently updated"),
    "waiting": _("Waiting longest"),
    "due": _("Response due soonest"),
}
CONFIDENTIALITY = {"": _("Any"), "yes": _("Confidential only"), "no": _("Not confidential")}
SEARCH_MAX_LENGTH = 200  # longer searches are cut, not refused
# Rows on a tracker page: the first is the default (GitLab's too); the others are offered.
PER_PAGE = (20, 50, 100)
# ``assignee=none``: issues nobody is assigned to (GitLab's ``assignee_id=None``).
NO_ASSIGNEE = "none"
# ``label=None``: issues without any label (GitLab's ``label_name[]=None``). ``label`` may be
# repeated: ``?label=bug&label=billing`` lists the issues with both (AND, as GitLab does).
NO_LABEL = "None"
MAX_LABEL_FILTERS = 10  # more are dropped: each is one EXISTS in the query
# ``requester:jake@customer.example`` in the search box: the issues that address wrote in.
_REQUESTER_TOKEN = re.compile(r"(?<!\S)requester:(\S*)", re.IGNORECASE)


def is_email_address(text: str) -> bool:
    try:
        validate_email(text)
    except ValidationError:
        return False
    return True


@dataclass(frozen=True)
class IssueFilters:
    state: str = "opened"
    view: str = ""  # a key of VIEWS
    search: str = ""  # as typed: words, "#12", an address, ``requester:<address>`` tokens
    labels: tuple[str, ...] = ()  # labels' titles (all of them), or NO_LABEL
    author: str = ""  # a username
    assignee: str = ""  # a username, or NO_ASSIGNEE
    confidential: bool | None = None
    sort: str = "created_desc"

    @property
    def service_desk(self) -> bool:
        """Only issues that came by email."""
        return self.view == "service_desk"

    @property
    def words(self) -> str:
        """The search without its ``requester:`` tokens: what is matched against the text."""
        return " ".join(_REQUESTER_TOKEN.sub(" ", self.search).split())

    @property
    def requesters(self) -> list[str]:
        """The addresses of the search's ``requester:`` tokens, lower-cased. A token that is no
        address stays in the list: it matches nothing, as the one typing would expect."""
        return [match.lower() for match in _REQUESTER_TOKEN.findall(self.search)]

    @property
    def chosen(self) -> int:
        """How many of the form's filters below the search box are set (the phone's "Filter"
        button says it, the filters being folded away there)."""
        others = [self.author, self.assignee, self.confidential is not None]
        return len(self.labels) + sum(bool(value) for value in others)

    @property
    def narrowed(self) -> bool:
        """Whether a filter narrows the list (what "Clear filters" resets): anything but the
        state tab, the view and the sort order."""
        return self != IssueFilters(state=self.state, view=self.view, sort=self.sort)


def page_size(value: str | int | None) -> int:
    """``value`` (a query string's ``per_page``, or what a session remembered) if it is one of
    PER_PAGE; anything else, None and nonsense included, is the default (the first)."""
    try:
        size = int(value or 0)
    except ValueError:  # also a string of over 4 300 digits
        return PER_PAGE[0]
    return size if size in PER_PAGE else PER_PAGE[0]


class _Titles(forms.Field):
    """Every value of a repeated parameter, trimmed, without blanks and repeats."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: object) -> tuple[str, ...]:
        values = value if isinstance(value, list | tuple) else [value] if value else []
        titles = (str(v).strip()[:255] for v in values)
        return tuple(dict.fromkeys(title for title in titles if title))[:MAX_LABEL_FILTERS]


class IssueFilterForm(forms.Form):
    state = forms.ChoiceField(choices=list(STATES.items()), required=False)
    view = forms.ChoiceField(choices=list(VIEWS.items()), required=False)
    service_desk = forms.BooleanField(required=False)  # links from before ``view`` existed
    search = forms.CharField(required=False)
    label = _Titles(required=False)
    author = forms.CharField(max_length=150, required=False)
    assignee = forms.CharField(max_length=150, required=False)
    confidential = forms.ChoiceField(choices=list(CONFIDENTIALITY.items()), required=False)
    sort = forms.ChoiceField(choices=list(SORTS.items()), required=False)

    def filters(self) -> IssueFilters:
        self.is_valid()
        data = self.cleaned_data  # holds only the fields that parsed
        confidential = data.get("confidential")
        view = data.get("view") or ("service_desk" if data.get("service_desk") else "")
        return IssueFilters(
            # "Waiting for us" says itself which states it holds (open, or closed before the
            # customer wrote): every state, unless a tab is asked for.
            state=data.get("state") or ("all" if view == "waiting" else "opened"),
            view=view,
            search=data.get("search", "")[:SEARCH_MAX_LENGTH],
            labels=data.get("label", ()),
            author=data.get("author", ""),
            assignee=data.get("assignee", ""),
            confidential={"yes": True, "no": False}.get(confidential or ""),
            # Who waits longest comes first in "Waiting for us", unless another order is asked.
            sort=data.get("sort") or ("waiting" if view == "waiting" else "created_desc"),
        )
