"""The project dashboard page (SPEC §11): Service Desk numbers and charts, Reporter+.

The charts are inline SVG laid out here, on the server: no JavaScript, no external assets, and
each chart has a <title>, a <desc> and its data as a table for screen readers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from projects import permissions
from projects.selectors import project_get_for_user
from satisfaction.selectors import SatisfactionReport, satisfaction_report
from servicedesk.http import anonymous_404_to_login
from sla.selectors import ResponseReport, response_report

from .dashboard import Dashboard, DayStats, project_dashboard

# The charts' coordinate system (viewBox); CSS scales them to the page's width.
WIDTH = 600
HEIGHT = 200
LEFT = 32  # room for the axis labels
LABEL_HALF_WIDTH = 20  # half of a "22 Nov" label: the last one must not be clipped
BOTTOM = 20
TOP = 10


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    points: str  # polyline points, for line charts
    ticks: list[tuple[float, int]]  # (y, value) for the horizontal grid lines
    labels: list[tuple[float, str]]  # (x, text) under the x axis
    top: int


def _scale_top(values: list[int]) -> int:
    top = max(values, default=0)
    return max(top, 1) if top <= 4 else -(-top // 4) * 4  # four even grid steps


def _y(value: int, top: int) -> float:
    plot = HEIGHT - BOTTOM - TOP
    return round(TOP + plot - plot * value / top, 1)


def _frame(
    days: list[DayStats], top: int
) -> tuple[list[tuple[float, int]], list[tuple[float, str]]]:
    step = (WIDTH - LEFT) / max(len(days), 1)
    values = range(top + 1) if top <= 4 else range(0, top + 1, top // 4)  # whole numbers only
    ticks = sorted({(_y(v, top), v) for v in values})
    last = len(days) - 1
    labels = [
        # Weekly, counted back from today so that labels never crowd; kept inside the chart.
        (min(round(LEFT + step * (i + 0.5), 1), WIDTH - LABEL_HALF_WIDTH), f"{d.day:%d %b}")
        for i, d in enumerate(days)
        if (last - i) % 7 == 0
    ]
    return ticks, labels


def opened_closed_chart(days: list[DayStats]) -> Chart:
    """Two bars per day: opened, then closed."""
    top = _scale_top([v for d in days for v in (d.opened, d.closed)])
    step = (WIDTH - LEFT) / max(len(days), 1)
    width = round(step * 0.4, 1)
    bars = []
    for i, d in enumerate(days):
        for j, (value, kind) in enumerate(((d.opened, "opened"), (d.closed, "closed"))):
            y = _y(value, top)
            x = round(LEFT + step * i + step * 0.1 + width * j, 1)
            bars.append(Bar(x, y, width, round(HEIGHT - BOTTOM - y, 1), kind))
    ticks, labels = _frame(days, top)
    return Chart(bars=bars, points="", ticks=ticks, labels=labels, top=top)


def backlog_chart(days: list[DayStats]) -> Chart:
    top = _scale_top([d.backlog for d in days])
    step = (WIDTH - LEFT) / max(len(days), 1)
    points = " ".join(
        f"{round(LEFT + step * (i + 0.5), 1)},{_y(d.backlog, top)}" for i, d in enumerate(days)
    )
    ticks, labels = _frame(days, top)
    return Chart(bars=[], points=points, ticks=ticks, labels=labels, top=top)


def _bars(groups: list[list[tuple[int, str]]], labels: list[str]) -> Chart:
    """Bars side by side per group (a week, a bucket): ``groups[i]`` is [(value, css class)]."""
    top = _scale_top([value for group in groups for value, _kind in group])
    step = (WIDTH - LEFT) / max(len(groups), 1)
    per = max((len(group) for group in groups), default=1)
    width = round(step * 0.8 / per, 1)
    bars = []
    for i, group in enumerate(groups):
        for j, (value, kind) in enumerate(group):
            y = _y(value, top)
            x = round(LEFT + step * i + step * 0.1 + width * j, 1)
            bars.append(Bar(x, y, width, round(HEIGHT - BOTTOM - y, 1), kind))
    values = range(top + 1) if top <= 4 else range(0, top + 1, top // 4)
    ticks = sorted({(_y(v, top), v) for v in values})
    xs = [
        (min(round(LEFT + step * (i + 0.5), 1), WIDTH - LABEL_HALF_WIDTH), text)
        for i, text in enumerate(labels)
    ]
    return Chart(bars=bars, points="", ticks=ticks, labels=xs, top=top)


def targets_chart(report: ResponseReport) -> Chart:
    return _bars(
        [[(w.met, "met"), (w.missed, "missed")] for w in report.weeks],
        [f"{w.start:%d %b}" for w in report.weeks],
    )


def first_response_chart(report: ResponseReport) -> Chart:
    return _bars([[(n, "bucket")] for _label, n in report.buckets], [b for b, _n in report.buckets])


def satisfaction_chart(report: SatisfactionReport) -> Chart:
    return _bars(
        [[(w.good, "good"), (w.okay, "okay"), (w.bad, "bad")] for w in report.weeks],
        [f"{w.start:%d %b}" for w in report.weeks],
    )


def humanize_duration(value: dt.timedelta | None) -> str:
    """3 min, 4 h 20 min, 2 d 3 h; "—" when there is nothing to measure."""
    if value is None:
        return "—"
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else "< 1 min"


@anonymous_404_to_login
@require_GET
def issue_dashboard(request: HttpRequest, full_path: str) -> HttpResponse:
    project = project_get_for_user(user=request.user, full_path=full_path)
    if not permissions.can_view_dashboard(request.user, project):
        raise Http404("No such page")
    dashboard: Dashboard = project_dashboard(project=project)
    responses = response_report(project=project)
    satisfaction = satisfaction_report(project=project)
    context = {
        "responses": responses,
        "targets_chart": targets_chart(responses),
        "first_response_chart": first_response_chart(responses),
        "p50": humanize_duration(responses.p50),
        "p90": humanize_duration(responses.p90),
        "satisfaction": satisfaction,
        "satisfaction_chart": satisfaction_chart(satisfaction),
        "project": project,
        "dashboard": dashboard,
        "median_first_response": humanize_duration(dashboard.median_first_response),
        "flow_chart": opened_closed_chart(dashboard.days),
        "backlog_chart": backlog_chart(dashboard.days),
        "chart": {"width": WIDTH, "height": HEIGHT, "left": LEFT, "label_y": HEIGHT - 4},
    }
    return render(request, "issues/dashboard.html", context)
