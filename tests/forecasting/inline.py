"""An in-process dispatcher for the pipeline executor: its messages collected and run here, in order."""

from __future__ import annotations


class InlineDispatcher:
    """Collects the executor's messages; ``drain()`` runs them here, in order, ignoring countdowns (kept)."""

    def __init__(self):
        self.queue: list[tuple] = []
        self.countdowns: list[float] = []
        self.revoked: list[str] = []

    def send(self, effects):
        self.revoked.extend(effects.revokes)
        for attempt_id, _task_id, countdown, _timeout in effects.attempts:
            self.queue.append(("attempt", attempt_id))
            self.countdowns.append(countdown)
        for branch_id, visit, countdown in effects.resumes:
            self.queue.append(("resume", branch_id, visit))
            self.countdowns.append(countdown)

    def drain(self, limit: int = 10000) -> int:
        from forecasting import services

        ran = 0
        while self.queue and ran < limit:
            message = self.queue.pop(0)
            if message[0] == "attempt":
                services.run_attempt(message[1], worker="inline")
            else:
                services.execution.resume(message[1], message[2])
            ran += 1
        return ran
