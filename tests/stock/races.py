"""Two connections racing on PostgreSQL: one holds its locks until the other is seen waiting for them."""

from __future__ import annotations

import threading
import time

from django.db import connection, connections, transaction


def while_the_other_waits(hold, other, *, waiting: str) -> tuple:
    """Run ``hold()`` in a transaction kept open until ``other()``, on its own connection, waits for a lock
    (``pg_stat_activity``); then let both finish. Returns what each returned; an error in ``other`` fails the
    caller's test with its repr, and ``waiting`` names what never waited if it never did."""
    holding, release, outcome = threading.Event(), threading.Event(), {}

    def first():
        try:
            with transaction.atomic():
                outcome["first"] = hold()
                holding.set()
                release.wait(30)
        finally:
            connections.close_all()

    def second():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                outcome["pid"] = cursor.fetchone()[0]
            outcome["second"] = other()
        except Exception as exc:  # reported below
            outcome["error"] = repr(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert holding.wait(30)
    threads[1].start()
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [outcome.get("pid")])
            row = cursor.fetchone()
            if row and row[0] == "Lock":
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"{waiting} never waited for the other's locks")
    release.set()
    for thread in threads:
        thread.join(30)
    assert "error" not in outcome, outcome
    return outcome["first"], outcome["second"]
