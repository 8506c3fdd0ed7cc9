"""What forecasting sets up on every ``bootstrap`` (``make run``): the forecast pipeline's current definition, and
its daily schedule as a django-celery-beat periodic task, off until staff switch it on (admin, *Periodic tasks*)."""

from __future__ import annotations

import json

from django.conf import settings
from django.db import transaction

from forecasting.forecast.pipeline import PIPELINE_NAME
from forecasting.forecast.pipeline import install as install_forecast_pipeline

SCHEDULE_NAME = "forecast pipeline, daily"
SCHEDULE_TASK = "forecasting.start_scheduled"
# What the scheduled run gets: the forecast of the next 28 days from a year of history (as of yesterday).
SCHEDULE_INPUT = {"horizon_days": 28, "history_days": 364, "model": "auto", "flags": {"volume_model_v2": False}}


@transaction.atomic
def install() -> None:
    """Save the forecast pipeline as the code defines it; create its schedule once (04:30 every day, in
    ``TIME_ZONE``, disabled), and leave it as staff changed it afterwards (enabled, time, input)."""
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    install_forecast_pipeline()
    if PeriodicTask.objects.filter(name=SCHEDULE_NAME).exists():
        return
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="4", day_of_week="*", day_of_month="*", month_of_year="*", timezone=settings.TIME_ZONE
    )
    PeriodicTask.objects.create(
        name=SCHEDULE_NAME,
        task=SCHEDULE_TASK,
        crontab=crontab,
        args=json.dumps([PIPELINE_NAME]),
        kwargs=json.dumps({"input": SCHEDULE_INPUT}),
        enabled=False,
        description=f"Starts a run of the pipeline {PIPELINE_NAME} (switch it on to forecast every day).",
    )
