"""Group reservations (``reserve_many``): many all-or-nothing reservations in one transaction.

The rules are those of single reservations, so the strongest check is that a group answers and writes
exactly what the same requests made one by one would, but for the level events, which a group
publishes once per ingredient with the level after the call.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from stock import selectors, services
from stock.models import Reservation
from stock.services import Item, ReservationRequest
from supplychain.core.errors import DomainError
from supplychain.events.models import OutboxEvent
from tests.stock.factories import IngredientFactory, csv_opener
from tests.stock.test_reserve_paths import Rollback, group_requests, snapshot, stock_up

pytestmark = pytest.mark.django_db
D = Decimal


def day(offset: int):
    return timezone.localdate() + timedelta(days=offset)


def answer(result_or_error) -> tuple:
    if isinstance(result_or_error, DomainError):
        return ("refused", result_or_error.status, result_or_error.type, result_or_error.errors)
    reservation = result_or_error
    return (reservation.status, reservation.response_status, reservation.response)


def one_by_one(requests: list[ReservationRequest]) -> list[tuple]:
    answers = []
    for request in requests:
        try:
            reservation = services.reserve_stock(
                transaction_id=request.transaction_id,
                items=request.items,
                needed_by=request.needed_by,
                hold_seconds=request.hold_seconds,
            )
        except DomainError as error:
            answers.append(answer(error))
        else:
            answers.append(answer(reservation))
    return answers


def as_group(requests: list[ReservationRequest]) -> list[tuple]:
    results = services.reserve_many(requests=requests)
    assert [result.transaction_id for result in results] == [request.transaction_id for request in requests]
    answers = []
    for result in results:
        got = answer(result.error if result.status == "refused" else result.reservation)
        assert result.http_status == got[1]
        answers.append(got)
    return answers


def replay_status(answers: list[tuple], existing: set[str], requests) -> list[str]:
    return [
        "replayed" if request.transaction_id in existing and answer[0] != "refused" else answer[0]
        for request, answer in zip(requests, answers, strict=True)
    ]


def run(way) -> dict:
    try:
        with transaction.atomic():
            stock_up()
            first_event = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first()
            answers = way(group_requests())
            found = snapshot(answers)
            found["level_events"] = [
                (e.type, e.payload)
                for e in OutboxEvent.objects.filter(
                    id__gt=first_event, type__in=["stock.level_changed", "stock.low"]
                ).order_by("id")
            ]
            raise Rollback
    except Rollback:
        return found


def last_per_sku(level_events: list[tuple]) -> dict:
    return {payload["sku"]: payload for kind, payload in level_events if kind == "stock.level_changed"}


def test_a_group_answers_and_writes_what_the_same_requests_one_by_one_would():
    singles = run(one_by_one)
    group = run(as_group)
    assert [a[0] for a in group["answers"]] == [
        "reserved", "reserved", "reserved", "rejected", "rejected", "reserved", "refused", "refused", "reserved",
        "reserved", "refused",
    ]  # fmt: skip
    assert group["violations"] == []
    for part in ("answers", "levels", "batches", "allocations", "ledger", "reservations", "holds", "violations"):
        assert group[part] == singles[part], part
    reservation_events = [e for e in group["events"] if e[0].startswith("stock.reservation")]
    assert reservation_events == [e for e in singles["events"] if e[0].startswith("stock.reservation")]
    # Level events: one per ingredient touched (and one stock.low for ham), each with the level after the call.
    kinds = [kind for kind, _ in group["level_events"]]
    assert kinds.count("stock.level_changed") == 3  # ham, Mushroom-2, cheese; "empty" got a level row, unchanged
    assert kinds.count("stock.low") == 1
    assert last_per_sku(group["level_events"]) == last_per_sku(singles["level_events"])
    assert len(singles["level_events"]) > len(group["level_events"])


def test_a_transaction_id_named_twice_in_one_group_is_refused_for_that_id_only():
    IngredientFactory(sku="ham")
    services.ingest_receipt(
        key="twice.csv", open_stream=csv_opener(f"sku,quantity,best_before\nham,10,{day(5)}\n"), source="upload"
    )
    results = services.reserve_many(
        requests=[
            ReservationRequest("x", [Item("ham", 1)]),
            ReservationRequest("y", [Item("ham", 2)]),
            ReservationRequest("x", [Item("ham", 1)]),
        ]
    )
    assert [(r.status, r.http_status) for r in results] == [("refused", 422), ("reserved", 201), ("refused", 422)]
    assert results[0].error.type == "transaction_id_repeated"
    assert list(Reservation.objects.values_list("transaction_id", flat=True)) == ["y"]
    assert selectors.stock_levels().get(sku="ham").reserved == D(2)


def test_the_same_id_with_another_body_is_refused_alone_and_the_rest_goes_on():
    IngredientFactory(sku="ham")
    services.ingest_receipt(
        key="reuse.csv", open_stream=csv_opener(f"sku,quantity,best_before\nham,10,{day(5)}\n"), source="upload"
    )
    services.reserve_stock(transaction_id="x", items=[Item("ham", 1)])
    results = services.reserve_many(
        requests=[ReservationRequest("x", [Item("ham", 2)]), ReservationRequest("z", [Item("ham", 3)])]
    )
    assert [(r.status, r.http_status) for r in results] == [("refused", 422), ("reserved", 201)]
    assert results[0].error.type == "transaction_id_reused"


def test_more_than_the_limit_is_refused_before_anything_is_written():
    IngredientFactory(sku="ham")
    requests = [ReservationRequest(f"t{n}", [Item("ham", 1)]) for n in range(services.GROUP_LIMIT + 1)]
    with pytest.raises(services.InvalidItems, match="At most 1000"):
        services.reserve_many(requests=requests)
    assert not Reservation.objects.exists()


def test_an_empty_group_answers_nothing():
    assert services.reserve_many(requests=[]) == []
