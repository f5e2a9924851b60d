from __future__ import annotations

from django.core.management.base import BaseCommand

from mailroom.models import InboundMessage


class Command(BaseCommand):
    help = "List received emails with their outcome (default: failures and rejections)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--all", action="store_true", help="every outcome, not only problems")
        parser.add_argument("--status", choices=[s.value for s in InboundMessage.Status])
        parser.add_argument("--outcome", choices=[o.value for o in InboundMessage.Outcome])
        parser.add_argument("--limit", type=int, default=50)

    def handle(self, *args: object, **options: object) -> None:
        rows = InboundMessage.objects.defer("raw").order_by("-received_at")
        if options["status"]:
            rows = rows.filter(status=options["status"])
        if options["outcome"]:
            rows = rows.filter(outcome=options["outcome"])
        if not (options["all"] or options["status"] or options["outcome"]):
            rows = rows.filter(outcome__in=["failed", "rejected"]) | rows.filter(status="failed")
        for row in rows[: int(options["limit"])]:  # type: ignore[call-overload]
            self.stdout.write(
                f"#{row.pk:<7} {row.received_at:%Y-%m-%d %H:%M:%S} {row.transport:<12} "
                f"{row.status:<10} {row.outcome or '-':<14} {row.from_address[:40]:<40} "
                f"{row.reason[:80]}"
            )
