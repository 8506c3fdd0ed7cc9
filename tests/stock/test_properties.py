"""Hypothesis drives random receipts, reservations, commits, releases and expiries; invariants hold after each step.

Invariants: ledger sum = on hand = remaining on active batches; reserved = open allocations = reserved on
batches; reserved <= on hand; available >= 0 (``stock.selectors.invariant_violations``), and a
reservation is either whole or absent.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from stock import selectors, services
from stock.models import Reservation, StockLevel
from stock.services import Item
from tests.stock.factories import IngredientFactory, csv_opener

SKUS = ["ham", "mushroom", "cheese"]
quantities = st.integers(min_value=1, max_value=40).map(Decimal)


class StockMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.files = 0
        self.transactions = 0
        self.today = timezone.localdate()

    @initialize()
    def ingredients(self):
        for sku in SKUS:
            IngredientFactory(sku=sku, low_stock_threshold=Decimal(10))

    @rule(rows=st.lists(st.tuples(st.sampled_from(SKUS), quantities, st.integers(0, 20)), min_size=1, max_size=5))
    def receive(self, rows):
        self.files += 1
        lines = ["sku,quantity,best_before,lot"]
        for number, (sku, quantity, days) in enumerate(rows):
            lines.append(f"{sku},{quantity},{self.today + timedelta(days=days)},f{self.files}-{number}")
        services.ingest_receipt(key=f"f{self.files}.csv", open_stream=csv_opener("\n".join(lines)), source="upload")

    @rule(
        items=st.dictionaries(st.sampled_from(SKUS), quantities, min_size=1, max_size=3),
        needed_in=st.one_of(st.none(), st.integers(0, 15)),
    )
    def reserve(self, items, needed_in):
        self.transactions += 1
        before = {level.ingredient.sku: level.reserved for level in StockLevel.objects.select_related("ingredient")}
        needed_by = self.today + timedelta(days=needed_in) if needed_in is not None else None
        reservation = services.reserve_stock(
            transaction_id=f"t{self.transactions}",
            items=[Item(sku, q) for sku, q in items.items()],
            needed_by=needed_by,
        )
        after = {level.ingredient.sku: level.reserved for level in StockLevel.objects.select_related("ingredient")}
        for sku, quantity in items.items():
            change = after.get(sku, 0) - before.get(sku, 0)
            assert change == (quantity if reservation.response_status == 201 else 0)  # all or nothing

    @rule(
        requests=st.lists(
            st.tuples(
                st.one_of(st.none(), st.integers(1, 6)),  # a new id, or one of the last few (a replay or a reuse)
                st.dictionaries(st.sampled_from(SKUS), quantities, min_size=1, max_size=3),
                st.one_of(st.none(), st.integers(0, 15)),
            ),
            min_size=1,
            max_size=8,
        )
    )
    def reserve_group(self, requests):
        before = {level.ingredient.sku: level.reserved for level in StockLevel.objects.select_related("ingredient")}
        group = []
        for back, items, needed_in in requests:
            if back is None or back > self.transactions:
                self.transactions += 1
                transaction_id = f"t{self.transactions}"
            else:
                transaction_id = f"t{self.transactions - back + 1}"
            needed_by = self.today + timedelta(days=needed_in) if needed_in is not None else None
            group.append(
                services.ReservationRequest(transaction_id, [Item(sku, q) for sku, q in items.items()], needed_by)
            )
        results = services.reserve_many(requests=group)
        assert [result.transaction_id for result in results] == [request.transaction_id for request in group]
        after = {level.ingredient.sku: level.reserved for level in StockLevel.objects.select_related("ingredient")}
        expected: dict[str, Decimal] = {}
        named = [request.transaction_id for request in group]
        for request, result in zip(group, results, strict=True):
            if named.count(request.transaction_id) > 1:
                assert (result.status, result.http_status) == ("refused", 422)
            assert result.status in ("reserved", "rejected", "replayed", "refused")
            if result.status == "reserved":  # all of it, from this call
                for item in request.items:
                    expected[item.sku] = expected.get(item.sku, Decimal(0)) + item.quantity
            if result.status != "refused":
                stored = Reservation.objects.get(transaction_id=request.transaction_id)
                assert stored.response == result.reservation.response
        for sku in SKUS:
            assert after.get(sku, 0) - before.get(sku, 0) == expected.get(sku, 0), sku

    def _open(self):
        return list(Reservation.objects.filter(status="reserved").values_list("transaction_id", flat=True))

    @rule(data=st.data())
    def commit(self, data):
        open_ids = self._open()
        if open_ids:
            services.commit_reservation(transaction_id=data.draw(st.sampled_from(open_ids)))

    @rule(data=st.data())
    def release(self, data):
        open_ids = self._open()
        if open_ids:
            services.release_reservation(transaction_id=data.draw(st.sampled_from(open_ids)))

    @rule(days=st.integers(1, 6))
    def time_passes_and_batches_expire(self, days):
        self.today += timedelta(days=days)
        services.expire_batches(today=self.today)

    @invariant()
    def invariants_hold(self):
        assert selectors.invariant_violations() == []


class _IsolatedMachine(StockMachine):
    """Each example runs inside a savepoint rolled back at teardown, so examples never see each other."""

    def __init__(self):
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        super().__init__()

    def teardown(self):
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)


@pytest.mark.django_db
def test_stock_invariants_hold_under_random_operations():
    run_state_machine_as_test(
        _IsolatedMachine,
        settings=settings(
            max_examples=30, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )
