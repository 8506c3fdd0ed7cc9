"""Delivery leases carry the claiming worker's name; a worker restarted under it takes them back, no one else's."""

import pytest
from django.utils import timezone

from supplychain.events import services
from supplychain.events.models import Delivery
from tests.events.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

THING = "probe.thing_happened"


def publish_and_relay() -> None:
    services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()


def claim(subscription, worker: str) -> Delivery:
    (delivery,) = services.deliveries._claim(subscription, 10, worker)
    return delivery


def test_a_claim_records_the_worker_and_only_that_worker_takes_its_leases_back():
    mine, theirs = SubscriptionFactory(name="mine"), SubscriptionFactory(name="theirs")
    publish_and_relay()
    held = claim(mine, "worker-a@host")
    other = claim(theirs, "worker-b@host")
    assert Delivery.objects.get(pk=held.pk).leased_by == "worker-a@host"
    assert Delivery.objects.get(pk=held.pk).visible_at > timezone.now()  # hidden for the lease

    assert services.take_back_leases(worker="worker-a@host") == 1

    assert Delivery.objects.get(pk=held.pk).visible_at <= timezone.now()  # due again at once
    assert Delivery.objects.get(pk=other.pk).visible_at > timezone.now()  # another worker's lease stands
    assert services.take_back_leases(worker="") == 0


def test_a_taken_back_delivery_is_attempted_again_and_succeeds():
    subscription = SubscriptionFactory(name="restartee", handler="probe-a")
    publish_and_relay()
    delivery = claim(subscription, "worker-a@host")  # the worker dies here, mid-attempt

    services.take_back_leases(worker="worker-a@host")
    report = services.process_deliveries(subscription_id=subscription.id, worker="worker-a@host")

    assert report.succeeded == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
