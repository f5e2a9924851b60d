"""The customer's side of a satisfaction survey: no login, a signed link from the closing email.

GET shows the answer chosen in the email as a form that the page's script sends at once (one
click for a person); mail scanners that fetch every link do not run scripts, so they answer
nothing. POST records it (again: idempotent) and offers a comment.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from issues.models import Issue

from .models import MAX_COMMENT, Rating, Score
from .services import rating_record, survey_read


@require_http_methods(["GET", "POST"])
def satisfaction(request: HttpRequest, token: str, score: str) -> HttpResponse:
    survey = survey_read(token)
    issue = (
        Issue.objects.select_related("project").filter(pk=survey.issue_id).first()
        if survey is not None
        else None
    )
    if survey is None or issue is None or score not in Score.values:
        return render(request, "satisfaction/expired.html", status=410)
    if request.method == "POST":
        score = request.POST.get("score", score)
        comment = request.POST.get("comment") if "comment" in request.POST else None
        rating = rating_record(survey=survey, score=score, comment=comment)
        if rating is None:
            return render(request, "satisfaction/expired.html", status=410)
        recorded = True
    else:
        rating = Rating.objects.filter(issue=issue, closed_at=survey.closed_at).first()
        recorded = rating is not None and rating.score == score
    context = {
        "issue": issue,
        "score": rating.score if recorded and rating is not None else score,
        "scores": Score.choices,
        "recorded": recorded,
        "comment": rating.comment if rating is not None else "",
        "until": survey.answerable_until,
        "max_comment": MAX_COMMENT,
    }
    return render(request, "satisfaction/survey.html", context)
