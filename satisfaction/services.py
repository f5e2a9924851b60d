"""Asking for and recording customer satisfaction (CSAT).

A closed ticket's closing email carries three links (good / okay / bad) when the project asks
(``ServiceDeskSetting.satisfaction_survey``). Each link holds a signed token naming the ticket
and the close it is about, valid for SURVEY_DAYS: no login, no database row until the customer
answers, the same answer twice changes nothing, a different one replaces it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse
from django.utils.translation import gettext as _

from issues.models import EmailParticipant, Issue

from .models import MAX_COMMENT, Rating, Score

SURVEY_DAYS = 7
_SALT = "satisfaction"
# Addresses that never read mail: no survey for them (RFC 2142 roles and the usual no-replies).
_ROBOT = re.compile(
    r"^(no-?reply|do-?not-?reply|donotreply|mailer-daemon|postmaster|bounces?)([+._-].*)?$", re.I
)


@dataclass(frozen=True)
class Survey:
    issue_id: int
    closed_at: datetime
    asked_at: datetime

    @property
    def answerable_until(self) -> datetime:
        return self.asked_at + timedelta(days=SURVEY_DAYS)


def survey_token(issue: Issue) -> str:
    assert issue.closed_at is not None
    return signing.dumps(
        {"i": issue.pk, "c": issue.closed_at.timestamp()}, salt=_SALT, compress=True
    )


def survey_read(token: str) -> Survey | None:
    """The survey a link names, or None when it is forged, garbled or older than SURVEY_DAYS."""
    token = token[:500]
    try:
        data = signing.loads(token, salt=_SALT, max_age=timedelta(days=SURVEY_DAYS))
        # signing.dumps writes "payload:timestamp:signature", the timestamp in base 62.
        asked_at = datetime.fromtimestamp(signing.b62_decode(token.rsplit(":", 2)[-2]), tz=UTC)
        closed_at = datetime.fromtimestamp(float(data["c"]), tz=UTC)
        return Survey(int(data["i"]), closed_at, asked_at)
    except (signing.BadSignature, KeyError, TypeError, ValueError, IndexError):
        return None


def survey_links(issue: Issue) -> dict[str, str]:
    token = survey_token(issue)
    return {
        score: settings.SITE_URL + reverse("satisfaction", args=[token, score])
        for score in Score.values
    }


def survey_wanted(participant: EmailParticipant) -> bool:
    local = participant.email.rpartition("@")[0]
    return not _ROBOT.match(local)


def survey_markdown(issue: Issue) -> str:
    """The closing email's question, in the active language (the project's email language)."""
    links = survey_links(issue)
    labels = {Score.GOOD: _("Good"), Score.OKAY: _("Okay"), Score.BAD: _("Bad")}
    answers = " · ".join(f"[{labels[Score(score)]}]({url})" for score, url in links.items())
    return f"**{_('How did we do?')}** {answers}"


@transaction.atomic
def rating_record(*, survey: Survey, score: str, comment: str | None = None) -> Rating | None:
    """Record (or change) the answer. None if the ticket is gone or the score is not one of
    ours. ``comment`` None keeps the comment already given."""
    if score not in Score.values:
        return None
    issue = Issue.objects.filter(pk=survey.issue_id).only("pk", "project_id").first()
    if issue is None:
        return None
    rating = (
        Rating.objects.select_for_update().filter(issue=issue, closed_at=survey.closed_at).first()
    )
    if rating is None:
        rating = Rating(project_id=issue.project_id, issue=issue, closed_at=survey.closed_at)
    rating.score = score
    if comment is not None:
        rating.comment = comment.strip()[:MAX_COMMENT]
    rating.save()
    return rating
