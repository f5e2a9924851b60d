"""The fault benchmark's oracle: what counts as lost, duplicated or wrongly failed.

``bench/faults.py`` observes a scenario (its ledger rows, issues, notes, outbox rows and what
the SMTP server received) into the plain data below; ``oracle`` judges it. Pure: no database,
no clock, no services, so the rules can be read here and tested on their own.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# The outcome each kind of message the benchmark sends must end with.
EXPECTED_OUTCOME = {"new": "issue_created", "reply": "note_added"}
UNFINISHED = ("queued", "processing")


@dataclass(frozen=True)
class LedgerRow:
    status: str
    outcome: str
    reason: str = ""


@dataclass(frozen=True)
class Message:
    """A message the benchmark sent, and what became of it."""

    token: str
    kind: str  # "new" (opens an issue) or "reply" (becomes a note)
    message_id: str
    delivered: bool  # the benchmark got it into the mailbox
    rows: tuple[LedgerRow, ...]  # its inbound ledger rows
    made: int  # issues ("new") or notes ("reply") carrying its token


@dataclass(frozen=True)
class Email:
    """An outbox row of the scenario's project, and the copies the SMTP server accepted."""

    pk: int
    kind: str
    recipient: str
    message_id: str
    status: str
    last_error: str = ""
    attempts: int = 1
    sent_at: float | None = None  # when the row was recorded sent
    arrivals: tuple[float, ...] = ()  # when the SMTP server accepted each copy, oldest first


@dataclass(frozen=True)
class Fault:
    """A fault the benchmark injected, from ``start`` to ``end``."""

    event: str
    start: float
    end: float
    kill: bool = False  # a kill -9 of the worker that sends


@dataclass(frozen=True)
class Observation:
    messages: tuple[Message, ...]
    emails: tuple[Email, ...]
    thank_yous: dict[int, int]  # each issue the scenario's new messages opened → thank-you rows
    faults: tuple[Fault, ...] = ()
    # Recipients the scenario made the SMTP server refuse for good (a 5xx): the only emails
    # allowed to end failed.
    permanent_refusals: frozenset[str] = frozenset()


@dataclass
class Verdict:
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        c = self.counts
        failures = ("not_delivered", "lost", "duplicates_inbound", "wrong_outcome", "missing",
                    "misrecorded", "failed_wrongly", "duplicates_outbound_unexplained")  # fmt: skip
        return c["outcomes_ok"] == c["messages"] and not any(c[name] for name in failures)


def oracle(seen: Observation) -> Verdict:
    """Judge one scenario: it passes when nothing is lost, doubled or wrongly failed.

    Each message the benchmark sent
      - was delivered to the mailbox (else ``not_delivered``);
      - has a ledger row, none of them still queued or processing (else ``lost``);
      - has one ledger row and made one issue or note (more: ``duplicates_inbound``);
      - ended issue_created (a new message) or note_added (a reply) and made it (else
        ``wrong_outcome``; ``outcomes_ok`` counts those that did).
    Each email due — every outbox row, and a thank-you for every issue opened —
      - exists: one thank-you row per issue (none: ``missing``; more: unexplained duplicates);
      - reached the SMTP server once and is recorded sent (``sent_once``; recorded otherwise:
        ``misrecorded``);
      - or reached it several times as at-least-once delivery allows: the row recorded sent
        only after the last copy, and a fault between each two copies (a kill of the sender
        between each: ``duplicates_after_kill_at_least_once``, another fault:
        ``duplicates_outbound``); any other repeat is ``duplicates_outbound_unexplained`` too;
      - or never reached it and ended failed with the server's reason, which is right only
        when the scenario made the server refuse that recipient for good
        (``failed_as_injected``); failed otherwise is ``failed_wrongly``, whatever the reason;
        anything else (pending, sending, "sent" but never received) is ``missing``.
    """
    verdict = Verdict()
    for message in seen.messages:
        _judge_message(message, verdict)
    for email in seen.emails:
        _judge_email(email, seen, verdict)
    _judge_thank_yous(seen.thank_yous, verdict)
    return verdict


def _judge_message(m: Message, verdict: Verdict) -> None:
    c, what = verdict.counts, f"{m.token} ({m.kind}, {m.message_id})"
    c["messages"] += 1
    c["ledger_rows"] += len(m.rows)
    if not m.delivered:
        c["not_delivered"] += 1
        verdict.problems.append(f"{what} could not be delivered by the benchmark")
    if len(m.rows) > 1 or m.made > 1:
        c["duplicates_inbound"] += 1
        verdict.problems.append(f"{what}: {len(m.rows)} ledger rows, {m.made} made")
    if not m.rows or any(row.status in UNFINISHED for row in m.rows):
        c["lost"] += 1
        verdict.problems.append(f"{what} lost: ledger rows {list(m.rows)}")
    elif len(m.rows) == 1 and m.rows[0].outcome == EXPECTED_OUTCOME[m.kind] and m.made == 1:
        c["outcomes_ok"] += 1
    elif len(m.rows) == 1:
        row = m.rows[0]
        c["wrong_outcome"] += 1
        verdict.problems.append(f"{what} ended {row.status}/{row.outcome or '-'} "
                                f"({row.reason}); {m.made} made")  # fmt: skip


def _judge_email(e: Email, seen: Observation, verdict: Verdict) -> None:
    c, what = verdict.counts, f"email {e.pk} ({e.kind} to {e.recipient}, {e.message_id})"
    c["emails_due"] += 1
    if len(e.arrivals) == 1 and e.status == "sent":
        c["sent_once"] += 1
    elif len(e.arrivals) == 1:
        c["misrecorded"] += 1
        verdict.problems.append(f"{what} arrived once but is recorded {e.status}")
    elif len(e.arrivals) > 1:
        _judge_copies(e, seen.faults, verdict)
    elif e.status == "failed" and e.last_error and e.recipient in seen.permanent_refusals:
        c["failed_as_injected"] += 1
    elif e.status == "failed":
        c["failed_wrongly"] += 1
        verdict.problems.append(f"{what} failed, but nothing refused it for good: "
                                f"{e.attempts} attempts, {e.last_error[:200]}")  # fmt: skip
    else:
        c["missing"] += 1
        verdict.problems.append(f"{what} never arrived: {e.status}, {e.attempts} attempts, "
                                f"{e.last_error[:200]}")  # fmt: skip


def _judge_copies(e: Email, faults: tuple[Fault, ...], verdict: Verdict) -> None:
    """An email the server accepted more than once: acceptable only as at-least-once delivery,
    each earlier copy accepted but not recorded, a fault between each two copies."""
    recorded_late = e.sent_at is not None and e.sent_at >= e.arrivals[-1]
    gaps = list(itertools.pairwise(e.arrivals))
    faults_between = [sorted({f.event for f in faults if f.start <= b and f.end >= a})
                      for a, b in gaps]  # fmt: skip
    after_kill = recorded_late and all(
        any(f.kill and a <= f.start <= b for f in faults) for a, b in gaps
    )
    explained = recorded_late and all(faults_between)
    verdict.duplicates.append({
        "email": e.pk, "kind": e.kind, "message_id": e.message_id, "copies": len(e.arrivals),
        "copies_at": list(e.arrivals), "sent_at": e.sent_at, "attempts": e.attempts,
        "status": e.status, "sent_at_after_last_copy": recorded_late,
        "faults_between_copies": faults_between, "at_least_once_after_kill": after_kill,
        "explained_by_fault": explained,
    })  # fmt: skip
    if after_kill:
        verdict.counts["duplicates_after_kill_at_least_once"] += 1
        return
    verdict.counts["duplicates_outbound"] += 1
    if not explained:
        verdict.counts["duplicates_outbound_unexplained"] += 1
    verdict.problems.append(
        f"email {e.pk} ({e.kind}, {e.message_id}) arrived {len(e.arrivals)} times; recorded "
        f"sent after the last copy: {recorded_late}; faults between copies: {faults_between}"
    )


def _judge_thank_yous(thank_yous: dict[int, int], verdict: Verdict) -> None:
    missing = sorted(issue for issue, rows in thank_yous.items() if rows == 0)
    doubled = sorted(issue for issue, rows in thank_yous.items() if rows > 1)
    if missing:
        verdict.counts["emails_due"] += len(missing)
        verdict.counts["missing"] += len(missing)
        verdict.problems.append(f"no thank-you written for issues {missing[:20]}")
    if doubled:
        verdict.counts["duplicates_outbound"] += len(doubled)
        verdict.counts["duplicates_outbound_unexplained"] += len(doubled)
        verdict.problems.append(f"several thank-yous written for issues {doubled[:20]}")
