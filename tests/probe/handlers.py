"""Probe handlers: record an effect; optionally announce the start in a file and sleep; fail on a switch."""

import time
from pathlib import Path

from supplychain.events.registry import subscriber
from tests.probe.models import Effect, Switch


def _record(name: str, envelopes: list[dict]) -> None:
    """Batch handler body: one bulk insert of effects for many events."""
    for envelope in envelopes:
        payload = envelope["payload"]
        started = Path(payload["started_file"]) if payload.get("started_file") else None
        if started is None or not started.exists():  # only the first run announces itself and sleeps
            if started is not None:
                started.write_text(envelope["id"])
            if payload.get("sleep"):
                time.sleep(payload["sleep"])
    Effect.objects.bulk_create([Effect(event_id=envelope["id"], handler=name) for envelope in envelopes])


@subscriber("probe-a", event_types=["probe.*"], auto_subscribe=False, batch=True)
def probe_a(envelopes: list[dict]) -> None:
    _record("probe-a", envelopes)


@subscriber("probe-b", event_types=["probe.*"], auto_subscribe=False, batch=True)
def probe_b(envelopes: list[dict]) -> None:
    _record("probe-b", envelopes)


@subscriber("probe-c", event_types=["probe.*"], auto_subscribe=False, batch=True)
def probe_c(envelopes: list[dict]) -> None:
    _record("probe-c", envelopes)


@subscriber("probe-flaky", event_types=["probe.*"], auto_subscribe=False)
def probe_flaky(envelope: dict) -> None:
    """Writes its effect, then fails while the 'broken' switch is on (the effect must roll back)."""
    Effect.objects.create(event_id=envelope["id"], handler="probe-flaky")
    if Switch.objects.filter(name="broken", on=True).exists():
        raise RuntimeError("probe is broken")
