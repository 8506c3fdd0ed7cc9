"""The events forecasting publishes about pipeline runs (schemas in forecasting/schemas/)."""

from __future__ import annotations

from forecasting.models import Run, RunStatus
from supplychain.events.services import NewEvent, publish_many

RUN_SUCCEEDED = "forecasting.run_succeeded"
RUN_FAILED = "forecasting.run_failed"


def run_payload(run: Run) -> dict:
    return {
        "run_id": str(run.id),
        "pipeline": run.pipeline.name,
        "name": run.name,
        "status": run.status,
        "error": run.error,
        "cause": run.cause[:2000],
        "started_at": run.started_at.isoformat(),
        "stopped_at": run.stopped_at.isoformat() if run.stopped_at else None,
        "redrive_count": run.redrive_count,
    }


def run_finished(run: Run) -> None:
    """Publish the run's end in the transaction that ended it (a failure is what alerting listens for)."""
    kind = RUN_SUCCEEDED if run.status == RunStatus.SUCCEEDED else RUN_FAILED
    publish_many([NewEvent(kind, run_payload(run), key=str(run.id))], with_keys=False)  # no read-back of the key
