"""The tracker's filters: what the GET form on the issue list may ask for.

The form only parses; ``issues.selectors`` applies the result. A value that does not parse
(a stale bookmark, a hand-edited URL) is dropped rather than answered with an error: the list
then shows what the remaining filters select.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms

STATES = {"opened": "Open", "closed": "Closed", "all": "All"}
SORTS = {
    "created_desc": "Newest",
    "created_asc": "Oldest",
    "updated_desc": "Recently updated",
    "updated_asc": "Least recently updated",
}
CONFIDENTIALITY = {"": "Any", "yes": "Confidential only", "no": "Not confidential"}
SEARCH_MAX_LENGTH = 200  # longer searches are cut, not refused
# ``assignee=none``: issues nobody is assigned to (GitLab's ``assignee_id=None``).
NO_ASSIGNEE = "none"


@dataclass(frozen=True)
class IssueFilters:
    state: str = "opened"
    service_desk: bool = False  # only issues that came by email
    search: str = ""  # title, description, readable comments; "#12" or "12" finds issue 12
    label: str = ""  # a label's title
    author: str = ""  # a username
    assignee: str = ""  # a username, or NO_ASSIGNEE
    confidential: bool | None = None
    sort: str = "created_desc"

    @property
    def narrowed(self) -> bool:
        """Whether a filter narrows the list (what "Clear filters" resets): anything but the
        state tab, the Service Desk view and the sort order."""
        return self != IssueFilters(
            state=self.state, service_desk=self.service_desk, sort=self.sort
        )


class IssueFilterForm(forms.Form):
    state = forms.ChoiceField(choices=list(STATES.items()), required=False)
    service_desk = forms.BooleanField(required=False)
    search = forms.CharField(required=False)
    label = forms.CharField(max_length=255, required=False)
    author = forms.CharField(max_length=150, required=False)
    assignee = forms.CharField(max_length=150, required=False)
    confidential = forms.ChoiceField(choices=list(CONFIDENTIALITY.items()), required=False)
    sort = forms.ChoiceField(choices=list(SORTS.items()), required=False)

    def filters(self) -> IssueFilters:
        self.is_valid()
        data = self.cleaned_data  # holds only the fields that parsed
        confidential = data.get("confidential")
        return IssueFilters(
            state=data.get("state") or "opened",
            service_desk=bool(data.get("service_desk")),
            search=data.get("search", "")[:SEARCH_MAX_LENGTH],
            label=data.get("label", ""),
            author=data.get("author", ""),
            assignee=data.get("assignee", ""),
            confidential={"yes": True, "no": False}.get(confidential or ""),
            sort=data.get("sort") or "created_desc",
        )
