"""The Celery application: configured from Django settings (``CELERY_*``), tasks found in every app."""

import os

from celery import Celery

from supplychain import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supplychain.settings")
broker.install()

app = Celery("supplychain")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
