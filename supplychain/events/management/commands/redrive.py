"""``manage.py redrive``: give dead deliveries a new round of attempts (one, a filter, or all)."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from supplychain.events import services


class Command(BaseCommand):
    help = "Redrive dead deliveries: by id, subscription, event type, dead-time window, or --all."

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, help="Delivery ids.")
        parser.add_argument("--subscription", help="Subscription name.")
        parser.add_argument("--event-type", help="Event type, or a prefix ending in * (stock.*).")
        parser.add_argument("--dead-since", help="ISO time: only deliveries that died at or after it.")
        parser.add_argument("--dead-before", help="ISO time: only deliveries that died before it.")
        parser.add_argument("--all", action="store_true", help="Every dead delivery.")

    def handle(self, *args, ids, subscription, event_type, dead_since, dead_before, all, **options):
        try:
            count = services.redrive_deliveries(
                delivery_ids=ids or None,
                subscription=subscription,
                event_type=event_type,
                dead_since=self._time(dead_since, "--dead-since"),
                dead_before=self._time(dead_before, "--dead-before"),
                all_dead=all,
                actor="manage.py redrive",
            )
        except services.NothingToRedrive as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(self.style.SUCCESS(f"{count} dead deliveries redriven."))

    @staticmethod
    def _time(value, flag):
        if value is None:
            return None
        parsed = parse_datetime(value)
        if parsed is None:
            raise CommandError(f"{flag}: not an ISO date-time: {value!r}")
        return parsed
