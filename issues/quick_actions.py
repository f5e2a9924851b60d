"""Quick actions (``/label ~bug``, ``/close``…), GitLab's syntax, in text the team writes: a
member's comment in the browser or by email, and the project's description templates.

One path for all three: ``quick_actions_parse`` takes the commands out of the text,
``apply_quick_actions`` carries them out through the services (each leaves its system note),
checking each one as the sidebar checks its button, and ``quick_actions_finish`` runs a
``/move`` once the comment is posted (GitLab's order: the comment lands on the issue, then the
issue moves, taking its thread along). ``quick_actions_explain`` says what they would do, for
the preview, without doing it.

Text from email never reaches here as commands: ``neutralise`` turns such lines into inline
code before they are stored (SPEC §4).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from projects import permissions

from .models import EmailParticipant, Issue, Label
from .selectors import assignable_users, issue_move_targets

if TYPE_CHECKING:
    from accounts.models import User

# Bounds: a comment is not a script. Commands past the cap stay in the text, as written.
MAX_COMMANDS = 20
MAX_ARGUMENT = 1000
MAX_EMAILS_PER_COMMAND = 6  # GitLab's /add_email limit

_COMMAND_LINE = re.compile(r"^/([A-Za-z_]+)(?:[ \t]+(.*))?$")
_LOOKS_LIKE_COMMAND = re.compile(r"^([ \t]*)(/[A-Za-z_]+\b.*)$", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
_LABEL = re.compile(r'~?"([^"]*)"|~?(\S+)')

COMMANDS = (
    "close", "reopen", "label", "unlabel", "relabel", "assign", "unassign", "confidential",
    "add_email", "remove_email", "convert_to_ticket", "move", "snooze", "unsnooze", "merge",
)  # fmt: skip
# Run once the comment is posted, as GitLab runs /move: the comment goes along with the thread.
AFTER_POSTING = frozenset({"move", "merge"})
# A description template is the project's own text, run by the Support Bot as an issue is
# created: it may sort the issue, not touch its participants or send it elsewhere.
TEMPLATE_COMMANDS = frozenset(
    {"close", "label", "unlabel", "relabel", "assign", "unassign", "confidential"}
)


def neutralise(text: str) -> str:
    """Make every line that looks like a slash command inert by wrapping it in inline code."""

    def wrap(match: re.Match[str]) -> str:
        command = match.group(2).rstrip()
        fence = "``" if "`" in command else "`"
        return f"{match.group(1)}{fence}{command}{fence}"

    return _LOOKS_LIKE_COMMAND.sub(wrap, text)


@dataclass(frozen=True)
class Command:
    name: str
    argument: str

    def __str__(self) -> str:
        """As written, shortened for messages (an argument may be 1 000 characters)."""
        argument = self.argument if len(self.argument) <= 80 else f"{self.argument[:79]}…"
        return f"/{self.name} {argument}".rstrip()


@dataclass
class ParsedText:
    text: str  # without the commands
    commands: list[Command]
    skipped: int = 0  # commands past MAX_COMMANDS, left in the text


def quick_actions_parse(text: str) -> ParsedText:
    """Take the command lines out of ``text``. A command is a whole line; lines in fenced code
    blocks and unknown ``/words`` stay as they are."""
    kept: list[str] = []
    commands: list[Command] = []
    skipped = 0
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _COMMAND_LINE.match(line.strip())
        name = match.group(1).lower() if match else ""
        if not match or name not in COMMANDS:
            kept.append(line)
        elif len(commands) >= MAX_COMMANDS:
            kept.append(line)
            skipped += 1
        else:
            commands.append(Command(name, (match.group(2) or "").strip()))
    return ParsedText("\n".join(kept).strip("\n"), commands, skipped)


@dataclass
class _Plan:
    """A command checked and resolved: what it will do, what it did, and how."""

    will: str  # for the preview: "add label ~billing"
    did: str  # for the flash message: "labelled ~billing"
    run: Callable[[], None]
    notes: list[str] = field(default_factory=list)  # parts left out ("~nope: no such label")


class Refused(Exception):
    """The command is not run; the message says why."""


@dataclass
class QuickActionResult:
    text: str
    issue: Issue  # the issue as it now is; after ``quick_actions_finish``, a move's copy
    applied: list[str] = field(default_factory=list)  # "labelled ~billing", "closed"
    refused: list[str] = field(default_factory=list)  # "/close: you may not close this issue"
    moves: list[tuple[Command, _Plan]] = field(default_factory=list)  # run by finish
    user: User | None = None

    def summary(self) -> str:
        """The flash message: 'Labelled ~billing, assigned @bob, closed.'"""
        if not self.applied:
            return ""
        sentence = ", ".join(self.applied)
        return f"{sentence[0].upper()}{sentence[1:]}."


def apply_quick_actions(
    *, issue: Issue, text: str, user: User, template: bool = False
) -> QuickActionResult:
    """Run the commands in ``text`` as ``user``, in order, and return the text without them.

    Each command is checked as the sidebar checks its button; one the user may not run, or
    whose argument is wrong, is not run and is listed in ``refused``. A ``/move`` waits for
    ``quick_actions_finish``. ``template``: the project's description template, run by the
    Support Bot without permission checks, limited to ``TEMPLATE_COMMANDS``.
    """
    parsed = quick_actions_parse(text)
    result = QuickActionResult(text=parsed.text, issue=issue, user=user)
    if parsed.skipped:
        result.refused.append(
            _("only %(max)s quick actions run per comment") % {"max": MAX_COMMANDS}
        )
    for command in parsed.commands:
        try:
            plan = _resolve(command, issue=issue, user=user, template=template)
        except Refused as refusal:
            result.refused.append(f"{command}: {refusal}")
            continue
        if command.name in AFTER_POSTING:
            result.moves.append((command, plan))
            continue
        _run(result, command, plan)
    return result


def quick_actions_finish(result: QuickActionResult) -> Issue:
    """Run a ``/move`` or ``/merge`` held back by ``apply_quick_actions``, after the comment was
    posted (the thread goes, the comment with it). Returns the issue to show: the copy if moved,
    the target if merged."""
    moves, result.moves = result.moves, []
    for command, plan in moves[:1]:
        _run(result, command, plan)
    for command, _later in moves[1:]:
        once = _("an issue moves or merges once")
        result.refused.append(f"{command}: {once}")
    return result.issue


def quick_actions_explain(*, issue: Issue, text: str, user: User) -> tuple[str, list[str]]:
    """The text without its commands, and what each command would do or why it would not run
    (the preview). Reads only."""
    parsed = quick_actions_parse(text)
    lines = []
    for command in parsed.commands:
        try:
            plan = _resolve(command, issue=issue, user=user, template=False)
        except Refused as refusal:
            lines.append(
                _("Will not run %(command)s: %(refusal)s")
                % {"command": command, "refusal": refusal}
            )
            continue
        lines.append(" ".join([_capital(plan.will), *(f"({n})" for n in plan.notes)]))
    if parsed.skipped:
        lines.append(
            _("Only %(max)s quick actions run per comment; the rest stay text.")
            % {"max": MAX_COMMANDS}
        )
    return parsed.text, lines


def _capital(text: str) -> str:
    return f"{text[0].upper()}{text[1:]}" if text else text


def _run(result: QuickActionResult, command: Command, plan: _Plan) -> None:
    try:
        plan.run()
    except ValidationError as error:
        result.refused.append(f"{command}: {' '.join(error.messages)}")
        return
    result.applied.append(plan.did)
    result.refused.extend(f"{command}: {note}" for note in plan.notes)
    if command.name in AFTER_POSTING:
        went = result.issue.moved_to or result.issue.merged_into
        if went is not None:
            result.issue = went
    else:
        result.issue.refresh_from_db()


# --- One function per command: check, resolve the argument, return the plan ------------------


def _resolve(command: Command, *, issue: Issue, user: User, template: bool) -> _Plan:
    if len(command.argument) > MAX_ARGUMENT:
        raise Refused(_("the argument is longer than %(max)s characters") % {"max": MAX_ARGUMENT})
    if template and command.name not in TEMPLATE_COMMANDS:
        raise Refused(_("not available in description templates"))
    if not template:
        allowed, refusal = _PERMISSIONS[command.name]
        if not allowed(user, issue):
            raise Refused(str(refusal))
    return _RESOLVERS[command.name](command.argument, issue, user)


def _no_argument(argument: str) -> None:
    if argument:
        raise Refused(_("takes no argument"))


def _close(argument: str, issue: Issue, user: User) -> _Plan:
    from .services import issue_close

    _no_argument(argument)
    if not issue.is_open:
        raise Refused(_("the issue is already closed"))
    return _Plan(
        _("close this issue"), _("closed"), lambda: _discard(issue_close(issue=issue, user=user))
    )


def _reopen(argument: str, issue: Issue, user: User) -> _Plan:
    from .services import issue_reopen

    _no_argument(argument)
    if issue.is_open:
        raise Refused(_("the issue is already open"))
    if issue.moved_to_id is not None:
        raise Refused(_("the issue was moved; reopen its copy"))
    return _Plan(
        _("reopen this issue"),
        _("reopened"),
        lambda: _discard(issue_reopen(issue=issue, user=user)),
    )


def _discard(_result: object) -> None:
    return None


def _label_titles(argument: str) -> list[str]:
    titles = [
        m.group(1) if m.group(1) is not None else m.group(2) for m in _LABEL.finditer(argument)
    ]
    return list(dict.fromkeys(t.strip() for t in titles if t.strip()))


def _labels_named(argument: str, issue: Issue) -> tuple[list[Label], list[str]]:
    """The project's labels named in ``argument`` (``~a ~"two words"``), and notes on the
    names that are not labels of the project."""
    titles = _label_titles(argument)
    if not titles:
        raise Refused(_("name at least one label: ~label"))
    found = {
        label.title: label
        for label in Label.objects.filter(project=issue.project, title__in=titles)
    }
    missing = [
        _("%(label)s: no such label") % {"label": f'~"{t}"' if " " in t else f"~{t}"}
        for t in titles
        if t not in found
    ]
    if not found:
        raise Refused("; ".join(missing))
    return [found[t] for t in titles if t in found], missing


def _label_refs(labels: list[Label]) -> str:
    return " ".join(
        f'~"{label.title}"' if " " in label.title else f"~{label.title}" for label in labels
    )


def _labels_plan(
    issue: Issue, user: User, current: list[Label], wanted: list[Label], will: str, did: str
) -> _Plan:
    from .services import issue_labels_set

    if {label.pk for label in current} == {label.pk for label in wanted}:
        raise Refused(_("the labels are already so"))
    return _Plan(
        will, did, lambda: _discard(issue_labels_set(issue=issue, user=user, labels=wanted))
    )


def _label(argument: str, issue: Issue, user: User) -> _Plan:
    found, missing = _labels_named(argument, issue)
    current = list(issue.labels.all())
    added = [label for label in found if label not in current]
    plan = _labels_plan(
        issue, user, current, [*current, *added],
        _("add %(labels)s") % {"labels": _label_refs(added)},
        _("labelled %(labels)s") % {"labels": _label_refs(added)},
    )  # fmt: skip
    plan.notes = missing
    return plan


def _unlabel(argument: str, issue: Issue, user: User) -> _Plan:
    current = list(issue.labels.all())
    if not argument:
        return _labels_plan(
            issue, user, current, [], _("remove all labels"), _("removed all labels")
        )
    found, missing = _labels_named(argument, issue)
    removed = [label for label in found if label in current]
    plan = _labels_plan(
        issue, user, current, [label for label in current if label not in found],
        _("remove %(labels)s") % {"labels": _label_refs(removed)},
        _("removed %(labels)s") % {"labels": _label_refs(removed)},
    )  # fmt: skip
    plan.notes = missing
    return plan


def _relabel(argument: str, issue: Issue, user: User) -> _Plan:
    found, missing = _labels_named(argument, issue)
    current = list(issue.labels.all())
    plan = _labels_plan(
        issue, user, current, found,
        _("replace the labels with %(labels)s") % {"labels": _label_refs(found)},
        _("relabelled %(labels)s") % {"labels": _label_refs(found)},
    )  # fmt: skip
    plan.notes = missing
    return plan


def _people_named(argument: str, issue: Issue, user: User) -> tuple[list[User], list[str]]:
    """The assignable people named (``@bob``, ``me``: the author of the text), and notes on
    the names that cannot be assigned (the sidebar's rule: Reporter+)."""
    names = list(dict.fromkeys(w.lstrip("@") for w in argument.replace(",", " ").split()))
    names = [user.username if n == "me" else n for n in names if n]
    if not names:
        raise Refused(_("name at least one person: @username"))
    found = {
        u.username: u for u in assignable_users(project=issue.project).filter(username__in=names)
    }
    missing = [
        _("@%(name)s cannot be assigned in this project") % {"name": n}
        for n in names
        if n not in found
    ]
    if not found:
        raise Refused("; ".join(missing))
    return [found[n] for n in names if n in found], missing


def _assignees_plan(
    issue: Issue, user: User, current: list[User], wanted: list[User], will: str, did: str
) -> _Plan:
    from .services import issue_assignees_set

    if {u.pk for u in current} == {u.pk for u in wanted}:
        raise Refused(_("the assignees are already so"))
    return _Plan(
        will, did, lambda: _discard(issue_assignees_set(issue=issue, user=user, assignees=wanted))
    )


def _mentions(people: list[User]) -> str:
    return ", ".join(f"@{u.username}" for u in people)


def _assign(argument: str, issue: Issue, user: User) -> _Plan:
    found, missing = _people_named(argument, issue, user)
    current = list(issue.assignees.all())
    added = [u for u in found if u not in current]
    plan = _assignees_plan(
        issue, user, current, [*current, *added],
        _("assign %(people)s") % {"people": _mentions(added)},
        _("assigned %(people)s") % {"people": _mentions(added)},
    )  # fmt: skip
    plan.notes = missing
    return plan


def _unassign(argument: str, issue: Issue, user: User) -> _Plan:
    current = list(issue.assignees.all())
    if not argument:
        return _assignees_plan(
            issue, user, current, [], _("unassign everyone"), _("unassigned everyone")
        )
    found, missing = _people_named(argument, issue, user)
    removed = [u for u in found if u in current]
    plan = _assignees_plan(
        issue, user, current, [u for u in current if u not in found],
        _("unassign %(people)s") % {"people": _mentions(removed)},
        _("unassigned %(people)s") % {"people": _mentions(removed)},
    )  # fmt: skip
    plan.notes = missing
    return plan


def _confidential(argument: str, issue: Issue, user: User) -> _Plan:
    from .services import issue_confidentiality_set

    _no_argument(argument)
    if issue.confidential:
        raise Refused(_("the issue is already confidential"))
    return _Plan(
        _("make this issue confidential"),
        _("made confidential"),
        lambda: _discard(issue_confidentiality_set(issue=issue, user=user, confidential=True)),
    )


def _addresses(argument: str) -> list[str]:
    words = argument.replace(",", " ").split()
    if not words:
        raise Refused(_("give an email address"))
    return list(dict.fromkeys(words))


def _add_email(argument: str, issue: Issue, user: User) -> _Plan:
    from .services import issue_participant_add

    addresses = _addresses(argument)
    kept, left_out = addresses[:MAX_EMAILS_PER_COMMAND], addresses[MAX_EMAILS_PER_COMMAND:]
    added: list[str] = []
    plan = _Plan(
        _("add %(addresses)s as participants") % {"addresses": ", ".join(kept)}, "", lambda: None
    )
    if left_out:
        plan.notes.append(
            _("at most %(max)s addresses per command; %(addresses)s not added")
            % {"max": MAX_EMAILS_PER_COMMAND, "addresses": ", ".join(left_out)}
        )

    def run() -> None:
        for address in kept:
            try:
                issue_participant_add(issue=issue, user=user, email=address)
            except ValidationError as error:
                plan.notes.append(" ".join(error.messages))
            else:
                added.append(address)
        if not added:
            raise ValidationError(plan.notes.pop() if len(plan.notes) == 1 else plan.notes)
        plan.did = _("added %(addresses)s as participants") % {"addresses": ", ".join(added)}

    plan.run = run
    return plan


def _remove_email(argument: str, issue: Issue, user: User) -> _Plan:
    from .services import issue_participant_remove

    addresses = _addresses(argument)[:MAX_EMAILS_PER_COMMAND]
    participants = [
        p
        for p in EmailParticipant.objects.filter(issue=issue)
        if p.email.lower() in {a.lower() for a in addresses}
    ]
    known = {p.email.lower() for p in participants}
    missing = [
        _("%(address)s is not a participant") % {"address": a}
        for a in addresses
        if a.lower() not in known
    ]
    if not participants:
        raise Refused("; ".join(missing))
    listed = ", ".join(p.email for p in participants)

    def run() -> None:
        for participant in participants:
            participant.issue = issue
            issue_participant_remove(participant=participant, user=user)

    return _Plan(
        _("remove %(addresses)s as participants") % {"addresses": listed},
        _("removed %(addresses)s") % {"addresses": listed},
        run,
        missing,
    )


def _convert_to_ticket(argument: str, issue: Issue, user: User) -> _Plan:
    from .services import issue_convert_to_service_desk

    addresses = _addresses(argument)
    if len(addresses) != 1:
        raise Refused(_("give one email address: the requester's"))
    if issue.is_service_desk:
        raise Refused(_("the issue is already a Service Desk issue"))
    [email] = addresses
    return _Plan(
        _("make this a Service Desk issue for %(email)s") % {"email": email},
        _("converted into a Service Desk issue for %(email)s") % {"email": email},
        lambda: _discard(issue_convert_to_service_desk(issue=issue, user=user, email=email)),
    )


def _move(argument: str, issue: Issue, user: User) -> _Plan:
    from .services import issue_move

    path = argument.strip().strip("/")
    if not path or " " in path:
        raise Refused(_("name one project: /move group/project"))
    if issue.moved_to_id is not None:
        raise Refused(_("the issue was already moved"))
    targets = {p.full_path.lower(): p for p in issue_move_targets(user=user, issue=issue)}
    target = targets.get(path.lower())
    if target is None or not permissions.can_move_issue(user, issue, target):
        raise Refused(
            _("you may not move issues to %(path)s, or it does not exist") % {"path": path}
        )

    def run() -> None:
        issue.moved_to = issue_move(issue=issue, user=user, target=target)

    return _Plan(
        _("move this issue to %(path)s") % {"path": target.full_path},
        _("moved to %(path)s") % {"path": target.full_path},
        run,
    )


def _snooze(argument: str, issue: Issue, user: User) -> _Plan:
    from .services import issue_snooze
    from .snooze import SnoozeError, snooze_until, snooze_words

    if not issue.is_open:
        raise Refused(_("only open issues can be snoozed"))
    try:
        until = snooze_until(argument, project=issue.project)
    except SnoozeError as error:
        raise Refused(str(error)) from None
    words = snooze_words(until)
    return _Plan(
        _("snooze this issue %(until)s") % {"until": words},
        _("snoozed %(until)s") % {"until": words},
        lambda: _discard(issue_snooze(issue=issue, user=user, until=until)),
    )


def _unsnooze(argument: str, issue: Issue, user: User) -> _Plan:
    from .services import issue_unsnooze

    _no_argument(argument)
    if not issue.is_snoozed:
        raise Refused(_("the issue is not snoozed"))
    return _Plan(
        _("wake this issue from its snooze"),
        _("unsnoozed"),
        lambda: _discard(issue_unsnooze(issue=issue, user=user)),
    )


def _merge(argument: str, issue: Issue, user: User) -> _Plan:
    from .selectors import merge_target
    from .services import issue_merge

    if issue.merged_into_id is not None or issue.moved_to_id is not None:
        raise Refused(_("the issue was already moved or merged"))
    try:
        target = merge_target(issue=issue, user=user, text=argument)
    except ValidationError as error:
        raise Refused(" ".join(error.messages)) from None

    def run() -> None:
        issue.merged_into = issue_merge(issue=issue, user=user, target=target)

    return _Plan(
        _("merge this issue into #%(iid)s") % {"iid": target.iid},
        _("merged into #%(iid)s") % {"iid": target.iid},
        run,
    )


_RESOLVERS: dict[str, Callable[[str, Issue, User], _Plan]] = {
    "close": _close,
    "reopen": _reopen,
    "label": _label,
    "unlabel": _unlabel,
    "relabel": _relabel,
    "assign": _assign,
    "unassign": _unassign,
    "confidential": _confidential,
    "add_email": _add_email,
    "remove_email": _remove_email,
    "convert_to_ticket": _convert_to_ticket,
    "move": _move,
    "snooze": _snooze,
    "unsnooze": _unsnooze,
    "merge": _merge,
}

# The sidebar's checks (the views in issues/views.py): closing and reopening need
# ``can_update_issue`` (authors below Reporter may close their own issue); everything else on
# the sidebar — labels, assignees, confidentiality, participants, converting — needs
# ``can_triage_issue``; moving needs ``can_move_issue`` (here, and again for the target).
_PERMISSIONS: dict[str, tuple[Callable[[User, Issue], bool], object]] = {
    "close": (permissions.can_update_issue, gettext_lazy("you may not close this issue")),
    "reopen": (permissions.can_update_issue, gettext_lazy("you may not reopen this issue")),
    "label": (permissions.can_triage_issue, gettext_lazy("you may not label this issue")),
    "unlabel": (permissions.can_triage_issue, gettext_lazy("you may not label this issue")),
    "relabel": (permissions.can_triage_issue, gettext_lazy("you may not label this issue")),
    "assign": (permissions.can_triage_issue, gettext_lazy("you may not assign this issue")),
    "unassign": (permissions.can_triage_issue, gettext_lazy("you may not assign this issue")),
    "confidential": (
        permissions.can_triage_issue,
        gettext_lazy("you may not change the confidentiality of this issue"),
    ),
    "add_email": (
        permissions.can_triage_issue,
        gettext_lazy("you may not add participants to this issue"),
    ),
    "remove_email": (
        permissions.can_triage_issue,
        gettext_lazy("you may not remove participants from this issue"),
    ),
    "convert_to_ticket": (
        permissions.can_triage_issue,
        gettext_lazy("you may not convert this issue"),
    ),
    "move": (
        lambda user, issue: permissions.can_move_issue(user, issue),
        gettext_lazy("you may not move this issue"),
    ),
    "snooze": (permissions.can_triage_issue, gettext_lazy("you may not snooze this issue")),
    "unsnooze": (permissions.can_triage_issue, gettext_lazy("you may not snooze this issue")),
    "merge": (permissions.can_triage_issue, gettext_lazy("you may not merge this issue")),
}
