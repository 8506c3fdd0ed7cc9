"""``manage.py backtest``: rolling-origin error of the volume model beside seasonal-naive's, on the stored history."""

from __future__ import annotations

import json
from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from forecasting.forecast import history, series


class Command(BaseCommand):
    help = "Rolling-origin backtest: MASE and MAPE of the forecast model and of seasonal-naive, as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--as-of", type=date.fromisoformat, help="last history day (default yesterday)")
        parser.add_argument("--history-days", type=int, default=364)
        parser.add_argument("--horizon-days", type=int, default=14)
        parser.add_argument("--origins", type=int, default=8)
        parser.add_argument("--step-days", type=int, default=7)
        parser.add_argument("--model", default="holt_winters", choices=["holt_winters", "holt_winters_v2"])
        parser.add_argument("--by-origin", action="store_true", help="print each origin's figures too")

    def handle(self, *args, as_of, history_days, horizon_days, origins, step_days, model, by_origin, **options):
        as_of = as_of or timezone.localdate() - timedelta(days=1)
        start = as_of - timedelta(days=history_days - 1)
        days = history.contiguous(history.load_days(start, as_of), end=as_of)
        try:
            result = series.backtest(days["orders"], horizon=horizon_days, origins=origins, step=step_days, model=model)
        except series.SeriesError as error:
            raise CommandError(f"{error} (run manage.py demo_history first?)") from None
        if not by_origin:
            result.pop("by_origin")
        self.stdout.write(json.dumps({"history": {"start": days["start"], "end": days["end"]}, **result}))
