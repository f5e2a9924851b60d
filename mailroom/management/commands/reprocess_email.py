from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from mailroom.models import InboundMessage
from mailroom.services import ReprocessRefused, inbound_reprocess


class Command(BaseCommand):
    help = "Queue stored emails for processing again (after a fix, or a failed attempt)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("ids", nargs="*", type=int, help="inbound message ids")
        parser.add_argument(
            "--failed", action="store_true", help="every message whose processing failed"
        )

    def handle(self, *args: object, **options: object) -> None:
        ids = list(options["ids"])  # type: ignore[call-overload]
        if options["failed"]:
            ids += InboundMessage.objects.filter(status=InboundMessage.Status.FAILED).values_list(
                "pk", flat=True
            )
        if not ids:
            raise CommandError("give message ids, or --failed")
        for message_id in ids:
            # The ledger page's refusals apply here too (being processed, carried out, spam).
            try:
                inbound_reprocess(message_id=message_id)
            except InboundMessage.DoesNotExist:
                raise CommandError(f"no inbound message {message_id}") from None
            except ReprocessRefused as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"inbound #{message_id}: queued again")
