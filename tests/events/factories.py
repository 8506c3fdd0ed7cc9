"""Factories for backbone tests."""

import factory

from supplychain.events.models import Subscription


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    name = factory.Sequence(lambda n: f"sub-{n}")
    event_types = factory.LazyFunction(lambda: ["probe.*"])
    target = Subscription.Target.HANDLER
    handler = "probe-a"
    max_attempts = 3
    initial_interval = 0.0
    backoff_rate = 2.0
    jitter = Subscription.Jitter.NONE
