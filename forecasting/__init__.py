"""Forecasting: the pipeline engine (state machines on Celery canvas) and the forecast steps."""
