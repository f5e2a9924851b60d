"""The fault benchmark's oracle (bench/fault_oracle.py): what it calls lost, doubled or wrongly
failed. Pure data in, a verdict out: no services."""

from __future__ import annotations

import dataclasses

from bench.fault_oracle import Email, Fault, LedgerRow, Message, Observation, oracle

JAKE = "jake@customers.example"


def new_message(**changes: object) -> Message:
    message = Message(
        token="fault-a-00000",
        kind="new",
        message_id="<fault-a-00000@customers.example>",
        delivered=True,
        rows=(LedgerRow("done", "issue_created"),),
        made=1,
    )
    return dataclasses.replace(message, **changes)  # type: ignore[arg-type]


def thank_you(**changes: object) -> Email:
    email = Email(
        pk=1,
        kind="thank_you",
        recipient=JAKE,
        message_id="<issue-1@servicedesk.example.test>",
        status="sent",
        attempts=1,
        sent_at=100.5,
        arrivals=(100.0,),
    )
    return dataclasses.replace(email, **changes)  # type: ignore[arg-type]


def observed(*emails: Email, **changes: object) -> Observation:
    seen = Observation(messages=(new_message(),), emails=emails, thank_yous={7: 1})
    return dataclasses.replace(seen, **changes)  # type: ignore[arg-type]


GAVE_UP = thank_you(
    status="failed",
    attempts=8,
    sent_at=None,
    arrivals=(),
    last_error="gave up after 8 attempts: SMTPDataError: (451, b'4.7.1 Greylisted')",
)


def test_a_clean_run_passes() -> None:
    verdict = oracle(observed(thank_you()))
    assert verdict.ok, verdict.problems
    assert (verdict.counts["outcomes_ok"], verdict.counts["sent_once"]) == (1, 1)


def test_a_failed_email_fails_the_scenario_unless_it_injected_a_permanent_error() -> None:
    verdict = oracle(observed(GAVE_UP))
    assert not verdict.ok
    assert verdict.counts["failed_wrongly"] == 1
    assert verdict.counts["failed_as_injected"] == 0
    assert any("Greylisted" in problem for problem in verdict.problems)

    refused = thank_you(status="failed", sent_at=None, arrivals=(),
                        last_error="SMTPRecipientsRefused: 550 5.1.1 no such user")  # fmt: skip
    verdict = oracle(observed(refused, permanent_refusals=frozenset({JAKE})))
    assert verdict.ok, verdict.problems
    assert verdict.counts["failed_as_injected"] == 1

    # The permanent error was for someone else: this failure is still wrong.
    others = frozenset({"finn@customers.example"})
    assert not oracle(observed(refused, permanent_refusals=others)).ok


def test_a_message_without_a_finished_ledger_row_is_lost() -> None:
    for rows in ((), (LedgerRow("processing", ""),)):
        verdict = oracle(observed(thank_you(), messages=(new_message(rows=rows, made=0),)))
        assert not verdict.ok
        assert verdict.counts["lost"] == 1


def test_a_message_processed_twice_or_ending_otherwise_fails() -> None:
    twice = new_message(rows=(LedgerRow("done", "issue_created"),) * 2, made=2)
    assert oracle(observed(thank_you(), messages=(twice,))).counts["duplicates_inbound"] == 1
    rejected = new_message(rows=(LedgerRow("done", "rejected", "rate limited"),), made=0)
    verdict = oracle(observed(thank_you(), messages=(rejected,)))
    assert not verdict.ok
    assert verdict.counts["wrong_outcome"] == 1


def test_an_email_received_twice_is_fine_only_as_at_least_once_across_a_fault() -> None:
    twice = thank_you(arrivals=(100.0, 130.0), sent_at=130.2, attempts=2)
    kill = Fault("kill -9 processor", 110.0, 110.0, kill=True)
    restart = Fault("restart postgres", 99.0, 101.0)

    after_kill = oracle(observed(twice, faults=(kill,)))
    assert after_kill.ok, after_kill.problems
    assert after_kill.counts["duplicates_after_kill_at_least_once"] == 1

    across_restart = oracle(observed(twice, faults=(restart,)))
    assert across_restart.ok, across_restart.problems
    assert across_restart.counts["duplicates_outbound"] == 1

    for unexplained in (
        oracle(observed(twice)),  # no fault at all
        oracle(observed(dataclasses.replace(twice, sent_at=100.2), faults=(kill,))),  # recorded
    ):
        assert not unexplained.ok
        assert unexplained.counts["duplicates_outbound_unexplained"] == 1


def test_an_email_never_received_or_received_but_not_recorded_sent_fails() -> None:
    for email in (
        thank_you(arrivals=()),  # recorded sent, never received
        thank_you(status="pending", arrivals=(), sent_at=None),
        thank_you(status="failed", last_error="SMTPDataError: (451, b'try later')"),  # received
    ):
        assert not oracle(observed(email)).ok, email


def test_an_issue_needs_exactly_one_thank_you_row() -> None:
    assert oracle(observed(thank_you(), thank_yous={7: 0})).counts["missing"] == 1
    doubled = oracle(observed(thank_you(), thank_yous={7: 2}))
    assert not doubled.ok
    assert doubled.counts["duplicates_outbound_unexplained"] == 1
