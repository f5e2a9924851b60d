"""Re-encrypt every stored secret with the newest key of SERVICEDESK_ENCRYPTION_KEYS.

Rotation: put a new key first in SERVICEDESK_ENCRYPTION_KEYS (keep the old ones after it),
restart, run this command, then remove the old keys. ``--new-key`` prints a fresh key.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from projects.models import CustomEmail
from servicedesk.encryption import InvalidToken, generate_key, rotate
from webhooks.models import Webhook


class Command(BaseCommand):
    help = "Re-encrypt stored secrets (SMTP credentials, webhook secrets) with the newest key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--new-key", action="store_true", help="only print a new key, change nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["new_key"]:
            self.stdout.write(generate_key())
            return
        rotated, unreadable = 0, []
        with transaction.atomic():
            for custom in CustomEmail.objects.select_for_update().order_by("pk"):
                try:
                    custom.smtp_username_encrypted = rotate(custom.smtp_username_encrypted)
                    custom.smtp_password_encrypted = rotate(custom.smtp_password_encrypted)
                except InvalidToken:
                    unreadable.append(custom.project_id)
                    continue
                custom.save(update_fields=["smtp_username_encrypted", "smtp_password_encrypted"])
                rotated += 1
            hooks, unreadable_hooks = self._rotate_webhooks()
        self.stdout.write(f"Re-encrypted the SMTP credentials of {rotated} project(s).")
        self.stdout.write(f"Re-encrypted the secrets of {hooks} webhook(s).")
        if unreadable_hooks:
            self.stderr.write(
                f"No configured key opens the secrets of webhook(s) "
                f"{', '.join(map(str, unreadable_hooks))}: they are sent unsigned until their "
                "secret is entered again."
            )
        if unreadable:
            raise CommandError(
                "No configured key opens the credentials of project(s) "
                f"{', '.join(map(str, unreadable))}: add back the key they were saved with."
            )

    def _rotate_webhooks(self) -> tuple[int, list[int]]:
        rotated, unreadable = 0, []
        for hook in Webhook.objects.select_for_update().exclude(secret_encrypted="").order_by("pk"):
            try:
                hook.secret_encrypted = rotate(hook.secret_encrypted)
            except InvalidToken:
                unreadable.append(hook.pk)
                continue
            hook.save(update_fields=["secret_encrypted"])
            rotated += 1
        return rotated, unreadable
