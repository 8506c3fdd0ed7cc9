"""A run's history rows, written in one round trip per transaction."""

from __future__ import annotations

import json

from django.db import connection

from forecasting.models import HistoryEvent
from supplychain.core.db import copy_rows

HISTORY_FIELDS = ("run", "type", "timestamp", "branch_key", "state", "details")
_HISTORY_SQL = """
    INSERT INTO forecasting_historyevent (run_id, type, timestamp, branch_key, state, details)
    SELECT r.run_id, r.type, r.timestamp, r.branch_key, r.state, r.details
      FROM jsonb_to_recordset(%s::jsonb)
        AS r(run_id uuid, type varchar, timestamp timestamptz, branch_key varchar, state varchar, details jsonb)
"""


def write_history(rows: list[tuple]) -> None:
    """Insert history rows (``HISTORY_FIELDS`` order) in one round trip: one JSON parameter on PostgreSQL.

    Every transition writes a few; COPY costs two round trips and per-value formatting in Python, where
    this is one ``json.dumps`` (measured: about 4 ms of a 50-state inline run, loaded).
    """
    if connection.vendor != "postgresql":
        copy_rows(HistoryEvent, HISTORY_FIELDS, rows)
        return
    payload = json.dumps(
        [
            {
                "run_id": str(run_id),
                "type": kind,
                "timestamp": moment.isoformat(),
                "branch_key": key,
                "state": state,
                "details": details,
            }
            for run_id, kind, moment, key, state, details in rows
        ],
        separators=(",", ":"),
    )
    with connection.cursor() as cursor:
        cursor.execute(_HISTORY_SQL, [payload])
