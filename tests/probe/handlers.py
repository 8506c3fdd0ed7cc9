"""Probe handlers: record an effect; optionally announce the start in a file and sleep; fail on a switch."""

import time
from pathlib import Path

from supplychain.events.registry import subscriber
from tests.probe.models import Effect, Switch


def _record(name: str, envelope: dict) -> None:
    payload = envelope["payload"]
    started = Path(payload["started_file"]) if payload.get("started_file") else None
    if started is None or not started.exists():  # only the first run announces itself and sleeps
        if started is not None:
            started.write_text(envelope["id"])
        if payload.get("sleep"):
            time.sleep(payload["sleep"])
    Effect.objects.create(event_id=envelope["id"], handler=name)


@subscriber("probe-a", event_types=["probe.*"], auto_subscribe=False)
def probe_a(envelope: dict) -> None:
    _record("probe-a", envelope)


@subscriber("probe-b", event_types=["probe.*"], auto_subscribe=False)
def probe_b(envelope: dict) -> None:
    _record("probe-b", envelope)


@subscriber("probe-c", event_types=["probe.*"], auto_subscribe=False)
def probe_c(envelope: dict) -> None:
    _record("probe-c", envelope)


@subscriber("probe-flaky", event_types=["probe.*"], auto_subscribe=False)
def probe_flaky(envelope: dict) -> None:
    """Writes its effect, then fails while the 'broken' switch is on (the effect must roll back)."""
    Effect.objects.create(event_id=envelope["id"], handler="probe-flaky")
    if Switch.objects.filter(name="broken", on=True).exists():
        raise RuntimeError("probe is broken")
