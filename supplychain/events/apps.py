"""App config of the event backbone."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class EventsConfig(AppConfig):
    name = "supplychain.events"
    label = "events"
    verbose_name = "Events and deliveries"

    def ready(self) -> None:
        from supplychain.events import (
            metrics,  # noqa: F401  (connects the task-runtime receivers)
            services,
        )

        self._sync_handler_subscriptions = services.sync_handler_subscriptions
        post_migrate.connect(self._after_migrate, sender=self)

    def _after_migrate(self, **kwargs) -> None:
        """Create the subscriptions of code-registered handlers (``@subscriber(auto_subscribe=True)``)."""
        self._sync_handler_subscriptions()
