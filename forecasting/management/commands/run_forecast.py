"""``manage.py run_forecast``: the forecast pipeline run in this process by the engine's local runner."""

from __future__ import annotations

import json
import uuid
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from forecasting.forecast.pipeline import PIPELINE_NAME


class Command(BaseCommand):
    help = "Run the forecast pipeline (history to purchase suggestions) in this process and publish it."

    def add_arguments(self, parser):
        parser.add_argument("--as-of", type=date.fromisoformat, help="last history day (default yesterday)")
        parser.add_argument("--horizon-days", type=int, default=28)
        parser.add_argument("--history-days", type=int, default=364)
        parser.add_argument("--model", default="auto", help="auto, holt_winters, holt_winters_v2, seasonal_naive, mean")
        parser.add_argument("--new-model", action="store_true", help="flag volume_model_v2: run and compare both")
        parser.add_argument("--name", help="run name (idempotency key); default forecast-<as_of>-<random>")
        parser.add_argument(
            "--celery",
            action="store_true",
            help=f"save the definition as pipeline {PIPELINE_NAME!r} and start the run on the Celery workers",
        )

    def handle(self, *args, as_of, horizon_days, history_days, model, new_model, name, celery, **options):
        from forecasting.forecast.pipeline import install, run_locally

        payload = {
            "horizon_days": horizon_days,
            "history_days": history_days,
            "model": model,
            "flags": {"volume_model_v2": new_model},
        }
        if as_of:
            payload["as_of"] = as_of.isoformat()
        name = name or f"forecast-{(as_of or date.today()).isoformat()}-{uuid.uuid4().hex[:8]}"
        if celery:
            from forecasting.services import start_run

            install()
            run, created = start_run(pipeline=PIPELINE_NAME, input=payload, name=name)
            self.stdout.write(json.dumps({"run_name": name, "run_id": str(run.pk), "started": created}))
            return
        execution = run_locally(payload, name=name)
        if execution.status != "SUCCEEDED":
            raise CommandError(f"the forecast failed: {execution.error}: {execution.cause}")
        self.stdout.write(json.dumps({"run_name": name, "states": len(execution.events), **execution.output}))
