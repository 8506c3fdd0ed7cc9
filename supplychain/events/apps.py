"""App config of the event backbone."""

from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "supplychain.events"
    label = "events"
    verbose_name = "Events and deliveries"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from supplychain.events import metrics, signals  # noqa: F401  (connects the task-runtime receivers)

        post_migrate.connect(signals.sync_after_migrate, sender=self)
