from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from servicedesk.retention import apply_retention


class Command(BaseCommand):
    help = (
        "Remove the content of finished emails and webhook requests older than the retention "
        "settings (SERVICEDESK_RETENTION_*_DAYS); their rows stay. Beat runs this daily."
    )

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--dry-run", action="store_true", help="only count the rows that would be cleared"
        )

    def handle(self, *args: object, **options: object) -> None:
        dry_run = bool(options["dry_run"])
        days = {
            "outbound": settings.SERVICEDESK_RETENTION_OUTBOUND_DAYS,
            "inbound": settings.SERVICEDESK_RETENTION_INBOUND_DAYS,
            "webhooks": settings.SERVICEDESK_RETENTION_WEBHOOK_DAYS,
        }
        verb = "would be cleared" if dry_run else "cleared"
        for name, count in apply_retention(dry_run=dry_run).items():
            if days[name] <= 0:
                self.stdout.write(f"{name}: kept for ever (retention 0)")
            else:
                self.stdout.write(f"{name}: {count} {verb} (older than {days[name]} days)")
