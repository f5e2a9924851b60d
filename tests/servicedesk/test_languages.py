"""Languages: the German catalogue is complete and current, people read the product in their
profile's language, projects send their customers the default emails in theirs, and the team's
notifications are written in each recipient's language."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from accounts.models import User
from issues.models import Issue, OutboundEmail
from issues.outbox import outbound_claim, outbound_send
from issues.quick_actions import apply_quick_actions, quick_actions_explain
from issues.services import note_create
from notifications.services import events_deliver
from projects.models import Role
from scripts.compilemessages import mo_bytes, parse_po
from scripts.makemessages import OPTIONS
from tests.factories import IssueFactory, member
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

ROOT = Path(settings.BASE_DIR)
CATALOGUE = ROOT / "locale" / "de" / "LC_MESSAGES" / "django.po"
EMAILS = ROOT / "templates" / "emails"
PLACEHOLDER = re.compile(r"%\{\s*([A-Z_]+)\s*\}")


def entries(text: str) -> list[dict[str, str]]:
    """The catalogue's entries (not the header): fields joined, flags as written."""
    found = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        current = ""
        for line in block.splitlines():
            if line.startswith("#,"):
                fields["flags"] = line[2:]
            elif line.startswith("#") or not line.strip():
                continue
            elif line.startswith('"'):
                fields[current] += ast.literal_eval(line)
            else:
                current, _, value = line.partition(" ")
                fields[current] = ast.literal_eval(value)
        if fields.get("msgid"):
            found.append(fields)
    return found


def key(entry: dict[str, str]) -> tuple[str, str, str]:
    return entry.get("msgctxt", ""), entry["msgid"], entry.get("msgid_plural", "")


# --- The catalogue ------------------------------------------------------------------------------


def test_every_german_entry_is_translated_and_none_is_fuzzy() -> None:
    found = entries(CATALOGUE.read_text(encoding="utf-8"))
    assert len(found) > 500
    fuzzy = [e["msgid"] for e in found if "fuzzy" in e.get("flags", "")]
    untranslated = [
        e["msgid"]
        for e in found
        if not all(v for k, v in e.items() if k.startswith("msgstr"))
        or not any(k.startswith("msgstr") for k in e)
    ]
    assert not fuzzy, f"fuzzy entries: {fuzzy}"
    assert not untranslated, f"untranslated entries: {untranslated}"
    # The German names the same %(values)s as the English, else a page shows the wrong thing
    # or fails; a plural's singular may say "one" instead of %(n)s.
    for entry in found:
        wanted = set(re.findall(r"%\(\w+\)s", entry["msgid"] + entry.get("msgid_plural", "")))
        for field, value in entry.items():
            if field.startswith("msgstr"):
                named = set(re.findall(r"%\(\w+\)s", value))
                assert named <= wanted, (entry["msgid"], value)
                assert wanted - named <= ({"%(n)s"} if field == "msgstr[0]" else set()), (
                    entry["msgid"],
                    value,
                )


def test_the_catalogue_holds_exactly_what_makemessages_finds(tmp_path: Path) -> None:
    """Run makemessages on a copy of the code: a string added (or removed) without updating
    locale/de fails here. `python scripts/makemessages.py` updates the catalogue."""
    if shutil.which("xgettext") is None:  # make test installs it; never a silent pass
        pytest.fail("GNU gettext (xgettext) is missing: scripts/install-system-deps.sh")
    skip = {".git", "locale", ".venv", "var", "artifacts", "tests", "bench", "docs", "static",
            ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"}  # fmt: skip
    copy = tmp_path / "copy"
    shutil.copytree(
        ROOT,
        copy,
        ignore=lambda d, names: (
            [n for n in names if n in skip or n.endswith(".egg-info")]
            if Path(d) == ROOT
            else [n for n in names if n == "__pycache__"]
        ),
    )
    (copy / "locale" / "de").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(copy), "SERVICEDESK_VAR_DIR": str(tmp_path / "var")}
    subprocess.run(
        [sys.executable, "scripts/makemessages.py", "de"],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
    )
    fresh = {key(e) for e in entries((copy / CATALOGUE.relative_to(ROOT)).read_text())}
    ours = {key(e) for e in entries(CATALOGUE.read_text(encoding="utf-8"))}
    assert fresh - ours == set(), "not in locale/de yet: run scripts/makemessages.py, translate"
    assert ours - fresh == set(), "no longer used: run scripts/makemessages.py"
    assert OPTIONS["no_obsolete"]


def test_the_compiler_writes_what_gettext_reads(tmp_path: Path) -> None:
    import gettext

    text = CATALOGUE.read_text(encoding="utf-8")
    mo = tmp_path / "django.mo"
    mo.write_bytes(mo_bytes(parse_po(text)))
    catalogue = gettext.GNUTranslations(mo.open("rb"))
    assert catalogue.gettext("Send reply") == "Antwort senden"
    assert catalogue.ngettext("%(n)s comment", "%(n)s comments", 1) == "%(n)s Kommentar"
    assert catalogue.ngettext("%(n)s comment", "%(n)s comments", 2) == "%(n)s Kommentare"
    assert catalogue.pgettext("preview", "Unknown placeholder:") == "Unbekannter Platzhalter:"
    fuzzy = 'msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n\n#, fuzzy\n'
    assert parse_po(fuzzy + 'msgid "Yes"\nmsgstr "Ja"\n') == {
        "": "Content-Type: text/plain; charset=UTF-8\n"
    }


def test_every_default_email_has_a_german_text_with_the_same_placeholders() -> None:
    for english in sorted(EMAILS.glob("*.md")):
        german = EMAILS / "de" / english.name
        assert german.exists(), f"no German default for {english.name}"
        assert set(PLACEHOLDER.findall(german.read_text())) == set(
            PLACEHOLDER.findall(english.read_text())
        ), english.name


# --- A person's language ------------------------------------------------------------------------


def test_pages_follow_the_browser_then_the_profile(client, project, reporter) -> None:
    url = reverse("issue_list", args=[project.full_path])
    client.force_login(reporter)
    page = client.get(url).content.decode()
    assert '<html lang="en">' in page
    assert ">Service Desk</a>" in page
    german = client.get(url, HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9").content.decode()
    assert '<html lang="de">' in german
    assert "Tickets filtern" in german

    # Saved on the profile: it wins over the browser's wish.
    response = client.post(reverse("profile"), {"name": "Bob", "language": "de"}, follow=True)
    assert response.status_code == 200
    reporter.refresh_from_db()
    assert reporter.language == "de"
    assert "Ihr Profil wurde gespeichert." in response.content.decode()
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="de">' in page
    assert "Abmelden" in page
    assert client.get(url).headers["Content-Language"] == "de"

    # A profile form posted without the field leaves the language as it is; "" is the browser's.
    client.post(reverse("profile"), {"name": "Bob"})
    reporter.refresh_from_db()
    assert reporter.language == "de"
    client.post(reverse("profile"), {"name": "Bob", "language": ""})
    reporter.refresh_from_db()
    assert reporter.language == ""
    assert '<html lang="en">' in client.get(url).content.decode()
    assert client.post(reverse("profile"), {"name": "Bob", "language": "xx"}).status_code == 400


def test_the_project_language_is_a_service_desk_setting(client, project, maintainer) -> None:
    client.force_login(maintainer)
    url = reverse("service_desk_settings", args=[project.full_path])
    page = client.get(url).content.decode()
    assert 'name="language"' in page
    assert "Deutsch" in page
    form = {"service_desk_enabled": "on", "project_key": "", "outgoing_name": "ACME",
            "description_template": "", "tickets_confidential_by_default": "on"}  # fmt: skip
    assert client.post(url, {**form, "language": "de"}).status_code == 302
    project.service_desk.refresh_from_db()
    assert project.service_desk.language == "de"
    # A form without the field (an older page) keeps it; an unknown code is refused.
    client.post(url, form)
    project.service_desk.refresh_from_db()
    assert project.service_desk.language == "de"
    assert client.post(url, {**form, "language": "xx"}).status_code == 400


# --- Emails -------------------------------------------------------------------------------------


@pytest.fixture
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"


def send_pending_customer_mail() -> None:
    ids = list(
        OutboundEmail.objects.exclude(kind="team")
        .filter(status=OutboundEmail.Status.PENDING)
        .values_list("pk", flat=True)
    )
    claimed, token = outbound_claim(ids)
    outbound_send(claimed, token)


def new_ticket(project) -> Issue:  # type: ignore[no-untyped-def]
    to = INCOMING.address_for(project.service_desk.default_key)
    row = deliver(make_email(to=to, subject="Drucker brennt"))
    assert row.outcome == "issue_created", row.reason
    return Issue.objects.get(pk=row.issue_id)


@pytest.mark.django_db
def test_a_german_project_sends_the_thank_you_in_german(project, smtp, mailboxes) -> None:
    project.service_desk.language = "de"
    project.service_desk.save()
    issue = new_ticket(project)
    send_pending_customer_mail()
    [captured] = smtp.wait_for(1)
    assert captured.recipients == ["jake@customer.example"]
    text = captured.message.get_body(("plain",)).get_content()
    assert f"dazu das Ticket #{issue.iid} eröffnet." in text
    assert "E-Mails zu diesem Ticket abbestellen" in text
    assert "Thank you" not in text
    assert captured.message["Subject"] == f"Re: Drucker brennt (#{issue.iid})"


@pytest.mark.django_db
def test_a_project_own_text_is_sent_as_written_whatever_its_language(
    project, smtp, mailboxes
) -> None:
    project.service_desk.language = "de"
    project.service_desk.thank_you_template = "Thanks! Ticket %{ISSUE_ID}."
    project.service_desk.save()
    issue = new_ticket(project)
    send_pending_customer_mail()
    [captured] = smtp.wait_for(1)
    assert f"Thanks! Ticket #{issue.iid}." in captured.message.get_body(("plain",)).get_content()


@pytest.mark.django_db
def test_english_projects_keep_the_english_thank_you(project, smtp, mailboxes) -> None:
    issue = new_ticket(project)
    send_pending_customer_mail()
    [captured] = smtp.wait_for(1)
    text = captured.message.get_body(("plain",)).get_content()
    assert f"opened ticket #{issue.iid} for it." in text


@pytest.mark.django_db
def test_team_notifications_are_written_in_each_recipient_language(project, mailboxes) -> None:
    german = member(project, Role.REPORTER, "greta")
    german.language = "de"
    german.save()
    english = member(project, Role.REPORTER, "bob")
    author = member(project, Role.DEVELOPER, "dan")
    issue = new_ticket(project)
    # Both take part in the ticket: they hear about its comments.
    note_create(issue=issue, author=german, body="Ich sehe es mir an.", notify=True)
    note_create(issue=issue, author=english, body="Me too.", notify=True)
    events_deliver()
    OutboundEmail.objects.all().delete()

    note_create(issue=issue, author=author, body="Schon gesehen.", internal=True, notify=True)
    events_deliver()
    emails = {e.user.username: e for e in OutboundEmail.objects.filter(kind="team")}
    assert set(emails) == {"greta", "bob"}
    de, en = emails["greta"], emails["bob"]
    assert de.subject.startswith(f"[{project.full_path}] Neuer Kommentar: ")
    assert "hat eine interne Notiz zu" in de.body_text
    assert "Sie erhalten diese E-Mail, weil" in de.body_text
    assert en.subject.startswith(f"[{project.full_path}] New comment: ")
    assert "wrote an internal note on" in en.body_text
    assert "You get this email because" in en.body_text
    assert User.objects.get(pk=english.pk).language == ""


@pytest.mark.django_db
def test_account_emails_follow_the_person_language(client, reporter, mailboxes) -> None:
    reporter.language = "de"
    reporter.save()
    response = client.post(reverse("password_reset"), {"email": reporter.email})
    assert response.status_code == 302
    [email] = OutboundEmail.objects.filter(kind="account", recipient=reporter.email)
    assert email.subject == "Setzen Sie Ihr Service-Desk-Passwort zurück"
    assert "Wählen Sie innerhalb von" in email.body_text


@pytest.mark.django_db
def test_quick_actions_report_in_the_page_language(project, reporter) -> None:
    issue = IssueFactory(project=project, author=reporter, confidential=False)
    with translation.override("de"):
        _text, lines = quick_actions_explain(issue=issue, text="/close\n/reopen", user=reporter)
        assert lines == [
            "Dieses Ticket schließen",
            "/reopen wird nicht ausgeführt: das Ticket ist bereits offen",
        ]
        result = apply_quick_actions(issue=issue, text="/confidential\n/close", user=reporter)
        assert result.summary() == "Vertraulich gemacht, geschlossen."
    issue = IssueFactory(project=project, author=reporter, confidential=False)
    result = apply_quick_actions(issue=issue, text="/confidential\n/close", user=reporter)
    assert result.summary() == "Made confidential, closed."


def test_tokens_webhooks_and_custom_email_pages_speak_german(  # type: ignore[no-untyped-def]
    client, project, maintainer, settings
):
    settings.SERVICEDESK_WEBHOOKS_ALLOW_PRIVATE = []
    maintainer.language = "de"
    maintainer.save(update_fields=["language"])
    client.force_login(maintainer)
    pages = {
        reverse("personal_access_tokens"): ["Persönliche Zugriffstoken", "Token erstellen"],
        reverse("api_docs"): ["Endpunkte", "Objekte"],
        reverse("webhook_list", args=[project.full_path]): [
            "Neuen Webhook hinzufügen",
            "Ticket-Ereignisse",
            "SSL-Überprüfung aktivieren",
        ],
        reverse("service_desk_custom_email", args=[project.full_path]): [
            "Eigene E-Mail-Adresse einrichten",
            "Speichern und bestätigen",
        ],
    }
    for url, texts in pages.items():
        page = client.get(url).content.decode()
        for text in texts:
            assert text in page, (url, text)
    response = client.post(
        reverse("webhook_list", args=[project.full_path]),
        {"url": "http://127.0.0.1/hook", "issue_events": "on"},
    )
    assert response.status_code == 400
    assert "127.0.0.1 ist eine Loopback-Adresse" in response.content.decode()
