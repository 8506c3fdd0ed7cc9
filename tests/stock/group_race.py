"""A race of group and single reservations over the same hot SKUs, in processes (used on PostgreSQL and SQLite).

Each request takes 3 of the SKUs in a random order (opposite orders from concurrent clients would
deadlock a wrong lock order). Returns what every client was answered, for the caller to check.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
from decimal import Decimal

HOT = [f"hot-{n}" for n in range(10)]


def _requests(label: str, count: int, seed: int):
    from stock.services import Item, ReservationRequest

    chooser = random.Random(seed)
    return [ReservationRequest(f"{label}-{n}", [Item(sku, 1) for sku in chooser.sample(HOT, 3)]) for n in range(count)]


def _client(kind: str, number: int, calls: int, group_size: int, barrier, answers) -> None:
    from django.db import connection

    from stock import services

    got, errors = [], []
    try:
        barrier.wait(timeout=120)
        for call in range(calls):
            label = f"{kind}{number}-{call}"
            if kind == "group":
                requests = _requests(label, group_size, seed=number * 1000 + call)
                results = services.reserve_many(requests=requests)
                for result, request in zip(results, requests, strict=True):
                    got.append((result.transaction_id, result.status, [item.sku for item in request.items]))
            else:
                (request,) = _requests(label, 1, seed=-number * 1000 - call)
                reservation = services.reserve_stock(transaction_id=request.transaction_id, items=request.items)
                got.append((reservation.transaction_id, reservation.status, [i.sku for i in request.items]))
    except Exception as exc:  # a deadlock or a serialization failure lands here
        errors.append(repr(exc))
    finally:
        connection.close()
        answers.put((got, errors))


def race(*, group_clients: int, single_clients: int, calls: int, group_size: int, single_calls: int) -> dict:
    """Run the clients in forked processes at once; return {"answers": [...], "errors": [...]}."""
    from django.db import connections

    connections.close_all()  # each forked client opens its own connection
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    barrier = context.Barrier(group_clients + single_clients)
    processes = [
        context.Process(target=_client, args=("group", n, calls, group_size, barrier, answers))
        for n in range(group_clients)
    ] + [
        context.Process(target=_client, args=("single", n, single_calls, 1, barrier, answers))
        for n in range(single_clients)
    ]
    for process in processes:
        process.start()
    outcomes = []
    try:
        for _ in processes:
            outcomes.append(answers.get(timeout=240))
    except queue.Empty:
        sessions = _sessions()  # before the kill ends them
        for process in processes:
            process.kill()
        missing = len(processes) - len(outcomes)
        raise AssertionError(f"{missing} clients never answered; sessions: {sessions}") from None
    for process in processes:
        process.join(timeout=60)
    return {
        "answers": [answer for got, _ in outcomes for answer in got],
        "errors": [error for _, errors in outcomes for error in errors],
    }


def _sessions() -> list:
    """What every other session of this database is doing (on PostgreSQL), to tell a hang's cause."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, wait_event_type, wait_event, left(query, 200) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchall()


def check(found: dict, supply_per_sku: int) -> dict[str, int]:
    """Every request answered once, nothing oversold; returns the units reserved per sku."""
    from stock import selectors
    from stock.models import Reservation, StockLevel

    assert found["errors"] == []
    answers = found["answers"]
    ids = [transaction_id for transaction_id, _, _ in answers]
    assert len(ids) == len(set(ids))  # every request answered exactly once
    assert {status for _, status, _ in answers} <= {"reserved", "rejected"}
    stored = dict(Reservation.objects.values_list("transaction_id", "status"))
    assert stored == {transaction_id: status for transaction_id, status, _ in answers}
    reserved: dict[str, int] = dict.fromkeys(HOT, 0)
    for _, status, skus in answers:
        if status == "reserved":
            for sku in skus:
                reserved[sku] += 1
    levels = {level.ingredient.sku: level for level in StockLevel.objects.select_related("ingredient")}
    for sku in HOT:
        assert levels[sku].reserved == Decimal(reserved[sku]), sku
        assert levels[sku].reserved <= levels[sku].on_hand == Decimal(supply_per_sku)
    assert selectors.invariant_violations() == []
    return reserved
