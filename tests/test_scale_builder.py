"""The scale benchmark's data set builder (bench/scale.py) at a tiny scale: the shape it
documents (counts, the threads of known length, personas and their roles). No timing here."""

from __future__ import annotations

import pytest

from bench.scale import Shape, build
from issues.models import EmailParticipant, Issue, Label, Note, OutboundEmail
from mailroom.models import InboundMessage
from notifications.models import Todo
from projects.models import Membership, Project, Role

pytestmark = pytest.mark.django_db


def test_the_tiny_data_set_has_the_documented_shape() -> None:
    shape = Shape(big=200, small=20, notes_per_issue=3, long_thread=50, inbound=300,
                  outbound=700)  # fmt: skip
    world = build(shape)

    big = Project.objects.get(full_path="scale/p100k")
    small = Project.objects.get(full_path="scale/p10k")
    assert big.issues.count() == 200
    assert small.issues.count() == 20
    assert list(big.issues.order_by("iid").values_list("iid", flat=True)) == list(range(1, 201))
    for project, key in ((big, "p100k"), (small, "p10k")):
        facts = world["projects"][key]
        assert facts["path"] == project.full_path
        long = project.issues.get(iid=facts["long_thread_iid"])
        assert long.notes.count() == 50
        assert project.issues.get(iid=facts["ten_notes_iid"]).notes.count() == 10
        assert not long.confidential
        assert long.external_author
        assert Label.objects.filter(project=project).count() == 10
        email_issues = project.issues.exclude(external_author="").count()
        assert email_issues == len([iid for iid in range(1, project.issues.count() + 1)
                                    if iid % 3 == 1])  # fmt: skip
        # One inbound "issue created" and one thank-you per email issue.
        assert InboundMessage.objects.filter(project=project, outcome="issue_created").count() \
            == email_issues  # fmt: skip
        assert OutboundEmail.objects.filter(project=project, kind="thank_you").count() \
            == email_issues  # fmt: skip
    # The ledgers split between the projects by size; the raw bytes are whole emails.
    assert InboundMessage.objects.count() == round(300 * 200 / 220) + round(300 * 20 / 220)
    assert OutboundEmail.objects.count() == round(700 * 200 / 220) + round(700 * 20 / 220)
    raw = bytes(InboundMessage.objects.order_by("pk").first().raw)  # type: ignore[union-attr]
    assert raw.startswith(b"Return-Path:")
    assert b"\r\n\r\n" in raw
    notes = Note.objects.all()
    assert notes.count() == world["counts"]["notes"]
    assert notes.filter(internal=True).exists()
    assert notes.filter(system=True).exists()
    quokkas = notes.filter(body__contains="quokka").count()
    assert 1 <= quokkas == world["counts"]["notes with quokka"] <= 10  # 5 issues per project
    assert EmailParticipant.objects.filter(issue__project=big).count() >= email_issues
    assert Issue.objects.filter(state="closed").exists()
    assert Issue.objects.filter(confidential=True).exists()
    assert Todo.objects.filter(done_at=None).exists()
    # Dates are spread over the two years before the build day, not all "now".
    first, last = Issue.objects.order_by("created_at").values_list("created_at", flat=True)[::219]
    assert (last - first).days > 700
    # 20 members of each project in five roles; the personas have theirs.
    assert Membership.objects.filter(project=big).count() == 20
    assert Membership.objects.get(project=big, user__username="bob").role == Role.REPORTER
    assert Membership.objects.get(project=big, user__username="mia").role == Role.MAINTAINER
    assert set(Membership.objects.filter(project=big).values_list("role", flat=True)) == set(Role)
    # The indexes dropped while filling are back.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'issues_note'")
        assert cursor.fetchone()[0] >= 3  # type: ignore[index]


def test_the_shape_key_follows_the_shape() -> None:
    assert Shape().key() != Shape.scaled(0.1).key()
    assert Shape().key() == Shape.scaled(1.0).key()
    assert Shape.scaled(0.1).big == 10_000
    assert Shape.scaled(0.1).small == 1000
