"""The forecast pipeline on the engine with a real Celery worker, Redis and PostgreSQL: every Task state runs
as a Celery task on the forecast queue, the Map loads the history in batches, and the run publishes."""

from __future__ import annotations

from datetime import date

import pytest
from django.db import transaction

from forecasting import services
from forecasting.forecast import history, pipeline
from forecasting.forecast.models import Forecast
from forecasting.models import HistoryEvent, Run, StateAttempt
from stock.demo import load_catalogue, load_purchasing_terms
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

AS_OF = date(2026, 12, 1)


def test_the_forecast_pipeline_runs_on_the_worker_and_publishes(celery_worker):
    load_catalogue()
    load_purchasing_terms()
    recipes = ["cheesy-onion-bake", "ham-mushroom-pasta"]
    history.store_demo_history(days=history.demo_days(end=AS_OF, days=56, recipes=recipes, seed=1))
    pipeline.install()
    with transaction.atomic():
        run, _ = services.start_run(
            pipeline=pipeline.PIPELINE_NAME,
            input={"as_of": AS_OF.isoformat(), "history_days": 56, "horizon_days": 7},
            name="worker-forecast",
        )

    def done():
        current = Run.objects.get(id=run.id)
        return current if current.status != "RUNNING" else None

    finished = wait_for(done, 240, "the forecast run to finish")
    assert finished.status == "SUCCEEDED", (finished.error, finished.cause)
    forecast = Forecast.objects.get(run_name="worker-forecast")
    assert forecast.points.count() == 7 and forecast.suggestions.exists()
    assert finished.output["forecast_id"] == forecast.pk
    batches = StateAttempt.objects.filter(run=run, state="LoadBatch")
    assert batches.count() == 2 and all(a.celery_task_id for a in batches)  # 56 days in 28-day batches
    types = set(HistoryEvent.objects.filter(run=run).values_list("type", flat=True))
    assert {"MapIterationSucceeded", "MapStateSucceeded", "ParallelStateSucceeded"} <= types
