"""The Celery application: configured from Django settings (``CELERY_*``), tasks found in every app."""

import os

from celery import Celery
from celery.signals import beat_init

from supplychain import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supplychain.settings")
broker.install()

app = Celery("supplychain")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@beat_init.connect
def _no_task_sent_events_from_beat(sender, **kwargs) -> None:
    """Beat sends its periodic tasks without task-sent events (``task_send_sent_event`` is per process).

    Flower lists every task it hears of; the sweep every few seconds (``EVENTS_SWEEP_SECONDS``) flooded that
    list. The sweep sends no worker events either (``send_events=False``); the other periodic tasks still
    appear, from their workers' task-received events on.
    """
    sender.app.conf.task_send_sent_event = False
