"""The two reservation paths agree: ``stock_reserve`` in PostgreSQL and the Python steps SQLite runs.

The same scenario runs through each on the same PostgreSQL database (rolled back in between), and
everything a user or subscriber can see must be equal: answers, batches, levels, allocations, the
ledger, and the events with their audit entries. Every event the database function writes must also
match its JSON Schema, as ``publish`` would have checked.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from stock import selectors, services
from stock.models import Allocation, Batch, Movement, Reservation, StockLevel
from stock.services import Item, ReservationRequest, groups, reservations
from supplychain.events import registry
from supplychain.events.models import AuditEntry, OutboxEvent
from tests.stock.factories import IngredientFactory, csv_opener
from tests.stock.races import while_the_other_waits

pytestmark = pytest.mark.django_db
D = Decimal


class Rollback(Exception):
    pass


def day(offset: int):
    return timezone.localdate() + timedelta(days=offset)


def scenario() -> list:
    """Receipts, then reservations that span batches, honour needed_by, cross the low mark, or fall short."""
    IngredientFactory(sku="ham", low_stock_threshold=D(15))
    IngredientFactory(sku="Mushroom-2")
    IngredientFactory(sku="cheese", unit="kg")
    IngredientFactory(sku="empty")
    services.ingest_receipt(
        key="paths.csv",
        open_stream=csv_opener(
            "sku,quantity,best_before,lot,supplier\n"
            f"ham,10,{day(3)},H1,Farm A\n"
            f"ham,10,{day(10)},H2,\n"
            f"ham,5,{day(1)},H0,Farm B\n"
            f"Mushroom-2,20.5,{day(5)},M1,Woods\n"
            f"cheese,7.25,{day(20)},C1,Dairy\n"
        ),
        source="upload",
    )
    answers = []
    requests = [
        ("a", [Item("ham", 12), Item("Mushroom-2", D("0.5"))], None, None),  # H0 + part of H1; ham crosses 15
        ("b", [Item("cheese", D("7.250")), Item("ham", 2)], None, 60),  # request order kept, a hold
        ("c", [Item("ham", 5)], day(5), None),  # only H2 lasts until day 5
        ("d", [Item("ham", 100), Item("cheese", 1), Item("Mushroom-2", 1)], None, None),  # two short: rejected
        ("e", [Item("empty", 1)], None, None),  # no level row yet: created, then short
        ("a", [Item("ham", 12), Item("Mushroom-2", D("0.500"))], None, None),  # a replay
    ]
    for transaction_id, items, needed_by, hold_seconds in requests:
        reservation = services.reserve_stock(
            transaction_id=transaction_id, items=items, needed_by=needed_by, hold_seconds=hold_seconds
        )
        answers.append((reservation.response_status, reservation.status, reservation.response))
    with pytest.raises(services.TransactionIdReused):
        services.reserve_stock(transaction_id="a", items=[Item("ham", 1)])
    with pytest.raises(services.UnknownSku) as unknown:
        services.reserve_stock(transaction_id="f", items=[Item("ham", 1), Item("caviar", 1)])
    answers.append(unknown.value.errors)
    # Commit and release: "a" empties batch H0 (depleted), "b" goes back with a note, closing twice is a no-op.
    closings = [
        (services.commit_reservation, {"transaction_id": "a"}),
        (services.release_reservation, {"transaction_id": "b", "note": "changed mind"}),
        (services.commit_reservation, {"transaction_id": "a"}),
        (services.release_reservation, {"transaction_id": "b"}),
    ]
    for close, arguments in closings:
        closed = close(**arguments)
        answers.append((closed.transaction_id, closed.status, closed.closed_at is not None))
    for close, transaction_id, error in [
        (services.release_reservation, "a", services.ReservationClosed),  # committed: cannot go back
        (services.commit_reservation, "d", services.ReservationClosed),  # rejected
        (services.commit_reservation, "nope", services.ReservationNotFound),
    ]:
        with pytest.raises(error) as refused:
            close(transaction_id=transaction_id)
        answers.append(str(refused.value))
    return answers


def snapshot(answers: list) -> dict:
    lots = dict(Batch.objects.values_list("id", "lot"))

    def plain(value):
        if isinstance(value, dict):
            return {
                k: (lots[v] if k == "batch_id" else None if k == "hold_until" and v else plain(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    events = list(OutboxEvent.objects.filter(type__startswith="stock.reservation").order_by("id"))
    events += list(OutboxEvent.objects.filter(type__in=["stock.level_changed", "stock.low"]).order_by("id"))
    published = {e.event_id: e for e in AuditEntry.objects.filter(kind="published")}
    for event in events:
        registry.validate(event.type, event.version, event.payload)
        entry = published[event.event_id]
        assert entry.data == event.envelope()
        assert (entry.event_type, entry.entity_key, entry.correlation_id) == (
            event.type,
            event.key,
            event.correlation_id,
        )
    return {
        "answers": plain(answers),
        "levels": sorted(StockLevel.objects.values_list("ingredient__sku", "on_hand", "reserved")),
        "batches": sorted(Batch.objects.values_list("lot", "quantity_remaining", "quantity_reserved", "status")),
        "allocations": sorted(
            Allocation.objects.values_list("reservation__transaction_id", "batch__lot", "ingredient__sku", "quantity")
        ),
        "ledger": sorted(
            Movement.objects.exclude(kind="receipt").values_list(
                "kind",
                "ingredient__sku",
                "batch__lot",
                "reservation__transaction_id",
                "on_hand_delta",
                "reserved_delta",
                "note",
            )
        ),
        "reservations": sorted(
            (r.transaction_id, r.status, r.response_status, r.request_hash, r.needed_by, r.closed_at is None)
            for r in Reservation.objects.all()
        ),
        "holds": sorted(Reservation.objects.filter(hold_until__isnull=False).values_list("transaction_id", flat=True)),
        "events": [(e.type, e.version, e.key, e.source, plain(e.payload)) for e in events],
        "violations": selectors.invariant_violations(),
    }


def close_in_python(transaction_id: str, status: str, note: str) -> Reservation:
    if status == Reservation.Status.COMMITTED:
        return reservations._commit_in_python(transaction_id)
    return reservations._release_in_python(transaction_id, note)


def run(monkeypatch, path: str) -> dict:
    with monkeypatch.context() as patch:
        if path == "python":
            patch.setattr(reservations, "_reserve_in_database", reservations._reserve_in_python)
            patch.setattr(reservations, "_close_in_database", close_in_python)
        try:
            with transaction.atomic():
                found = snapshot(scenario())
                raise Rollback
        except Rollback:
            return found


def test_database_function_and_python_path_agree(monkeypatch):
    assert connection.vendor == "postgresql"
    in_database = run(monkeypatch, "database")
    in_python = run(monkeypatch, "python")
    assert in_database["violations"] == []
    assert [answer[0] for answer in in_database["answers"][:6]] == [201, 201, 201, 409, 409, 201]
    assert [e[0] for e in in_database["events"]].count("stock.low") == 1
    assert ("H0", D("0.000"), D("0.000"), "depleted") in in_database["batches"]
    assert [e[0] for e in in_database["events"]].count("stock.reservation_committed") == 1
    assert [e[0] for e in in_database["events"]].count("stock.reservation_released") == 1
    for part in in_python:
        assert in_database[part] == in_python[part], part


def test_database_reservation_answer_lists_batches_first_expiring_first():
    IngredientFactory(sku="ham")
    services.ingest_receipt(
        key="fefo.csv",
        open_stream=csv_opener(f"sku,quantity,best_before,lot\nham,4,{day(9)},LATE\nham,4,{day(2)},EARLY\n"),
        source="upload",
    )
    reservation = services.reserve_stock(transaction_id="fefo", items=[Item("ham", 6)])
    assert reservation.response_status == 201
    (line,) = reservation.response["items"]
    assert line["quantity"] == "6.000"
    assert [(b["lot"], b["quantity"]) for b in line["batches"]] == [("EARLY", "4.000"), ("LATE", "2.000")]
    stored = Reservation.objects.get(transaction_id="fefo")
    assert stored.response == reservation.response
    assert services.reservation_document(stored) == reservation.response


def test_repeated_sku_in_one_request_is_refused():
    IngredientFactory(sku="ham")
    with pytest.raises(services.InvalidItems) as refused:
        services.reserve_stock(transaction_id="twice", items=[Item("ham", 1), Item("ham", 2)])
    assert refused.value.errors == {"items": ["Each sku once; repeated: ham."]}
    assert not Reservation.objects.exists()


def test_the_database_function_refuses_a_repeated_sku_itself():
    """Its joins by ingredient would count a repeated item twice, so it does not rely on the caller's check."""
    from django.db import DataError

    assert connection.vendor == "postgresql"
    IngredientFactory(sku="ham")
    with pytest.raises(DataError, match="each sku once"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT stock_reserve('twice', '{}'::jsonb, 'x', ARRAY['ham', 'ham'], ARRAY[1, 2]::numeric[],"
            " current_date, NULL, NULL, now()::text, '', '{}'::jsonb)"
        )


@pytest.mark.parametrize("path", ["database", "python"])
def test_commit_after_expiry_moved_an_allocation_onto_a_batch_already_held(monkeypatch, path):
    """Two allocations on one batch: committing takes both from it and marks it depleted, on both paths."""
    if path == "python":
        monkeypatch.setattr(reservations, "_close_in_database", close_in_python)
    IngredientFactory(sku="ham")
    services.ingest_receipt(
        key="twice.csv",
        open_stream=csv_opener(f"sku,quantity,best_before,lot\nham,1,{day(1)},SOON\nham,2,{day(9)},LATER\n"),
        source="upload",
    )
    services.reserve_stock(transaction_id="r", items=[Item("ham", 2)])  # SOON 1 + LATER 1
    services.expire_batches(today=day(2))  # SOON expires: its unit moves onto LATER, already held
    assert sorted(Allocation.objects.filter(open=True).values_list("batch__lot", "quantity")) == [
        ("LATER", D("1.000")),
        ("LATER", D("1.000")),
    ]
    services.commit_reservation(transaction_id="r")
    later = Batch.objects.get(lot="LATER")
    assert (later.quantity_remaining, later.quantity_reserved, later.status) == (D("0.000"), D("0.000"), "depleted")
    assert selectors.invariant_violations() == []


# ---- Group reservations: the set-based writes (PostgreSQL) and the portable ones (SQLite) ----------


def stock_up() -> None:
    IngredientFactory(sku="ham", low_stock_threshold=D(15))
    IngredientFactory(sku="Mushroom-2")
    IngredientFactory(sku="cheese", unit="kg")
    IngredientFactory(sku="empty")
    services.ingest_receipt(
        key="group.csv",
        open_stream=csv_opener(
            "sku,quantity,best_before,lot,supplier\n"
            f"ham,10,{day(3)},H1,Farm A\n"
            f"ham,10,{day(10)},H2,\n"
            f"ham,5,{day(1)},H0,Farm B\n"
            f"Mushroom-2,20.5,{day(5)},M1,Woods\n"
            f"cheese,7.25,{day(20)},C1,Dairy\n"
        ),
        source="upload",
    )
    services.reserve_stock(transaction_id="earlier", items=[Item("cheese", 1)])  # replayed by the group
    services.reserve_stock(transaction_id="other", items=[Item("cheese", 1)])  # reused with another body


def group_requests(*, repeated_ids: bool = False) -> list[ReservationRequest]:
    """Spans batches, needed_by, a hold, a shortage only because of the requests before it, replays and refusals.

    ``repeated_ids`` adds an id named twice in the call (refused for that id: one by one it would not be).
    """
    requests = [
        ReservationRequest("a", [Item("ham", 12), Item("Mushroom-2", D("0.5"))]),  # H0 + part of H1; ham crosses 15
        ReservationRequest("b", [Item("cheese", D("4.250")), Item("ham", 2)], hold_seconds=60),
        ReservationRequest("c", [Item("ham", 5)], needed_by=day(5)),  # only H2 lasts until day 5
        ReservationRequest("d", [Item("ham", 7), Item("cheese", 2)]),  # cheese: 1 left after b, "earlier", "other"
        ReservationRequest("e", [Item("empty", 1)]),  # no level row yet: created, then short
        ReservationRequest("earlier", [Item("cheese", 1)]),  # the same body as before: replayed
        ReservationRequest("earlier-2", [Item("ham", 1), Item("ham", 2)]),  # a repeated sku: refused (400)
        ReservationRequest("f", [Item("ham", 1), Item("caviar", 1)]),  # an unknown sku: refused (400)
        ReservationRequest("g", [Item("ham", 6)]),  # fits: what "d" did not take stays free
        ReservationRequest("h", [Item("Mushroom-2", 20)]),  # exactly what is left
        ReservationRequest("other", [Item("ham", 2)]),  # the same id as before with another body: refused (422)
    ]
    if repeated_ids:
        requests += [ReservationRequest("twice", [Item("cheese", 1)]), ReservationRequest("twice", [Item("cheese", 1)])]
    return requests


def group_answers(requests: list[ReservationRequest]) -> list:
    return [
        (r.transaction_id, r.status, r.http_status, r.reservation.response if r.reservation else r.error.errors)
        for r in services.reserve_many(requests=requests)
    ]


def run_group(monkeypatch, writes: str) -> dict:
    with monkeypatch.context() as patch:
        if writes == "portable":
            patch.setattr(groups, "_set_based", lambda: False)
        try:
            with transaction.atomic():
                stock_up()
                first = group_answers(group_requests(repeated_ids=True))
                again = group_answers(group_requests(repeated_ids=True))  # every one a replay or a refusal now
                found = snapshot([first, again])
                raise Rollback
        except Rollback:
            return found


def test_group_calls_write_the_same_on_both_paths(monkeypatch):
    assert connection.vendor == "postgresql"
    set_based = run_group(monkeypatch, "set_based")
    portable = run_group(monkeypatch, "portable")
    first, again = set_based["answers"]
    assert [status for _, status, _, _ in first].count("reserved") == 5
    assert [status for _, status, _, _ in again] == [
        "replayed" if status in ("reserved", "rejected") else status for _, status, _, _ in first
    ]
    assert set_based["violations"] == []
    for part in set_based:
        assert set_based[part] == portable[part], part


# ---- stock_reserve_many: the plan made before the locks, and the re-check under them ----------------


def reserve_many_while_another_reservation_commits(monkeypatch, supply: str, requests: list[ReservationRequest]):
    """The group plans on what is committed, then waits for the level lock a single reservation holds;
    that one commits (taking 4 ham) and the group goes on. Returns the group's results and its answer."""
    IngredientFactory(sku="ham")
    services.ingest_receipt(key="stale.csv", open_stream=csv_opener(supply), source="upload")
    answers = []
    calling = groups.call_stock_function

    def capture(sql, params):
        answers.append(calling(sql, params))
        return answers[-1]

    monkeypatch.setattr(groups, "call_stock_function", capture)
    _, results = while_the_other_waits(
        lambda: services.reserve_stock(transaction_id="other", items=[Item("ham", 4)]),
        lambda: services.reserve_many(requests=requests),
        waiting="the group",  # for the level lock: it has planned
    )
    (answer,) = answers
    return results, answer


def lots(result) -> list[tuple[str, str]]:
    return [(b["lot"], b["quantity"]) for line in result.reservation.response["items"] for b in line["batches"]]


@pytest.mark.django_db(transaction=True)
def test_a_group_planned_on_stock_taken_meanwhile_is_planned_again_under_the_locks(monkeypatch):
    """Planned on H1 10 free, the group finds 6 once it holds the lock: its plan (H1 8, then H1 2 + H2 3) no
    longer fits, and the answer is what planning under the locks gives."""
    supply = f"sku,quantity,best_before,lot\nham,10,{day(3)},H1\nham,10,{day(9)},H2\n"
    results, answer = reserve_many_while_another_reservation_commits(
        monkeypatch,
        supply,
        [ReservationRequest("a", [Item("ham", 8)]), ReservationRequest("b", [Item("ham", 5)])],
    )
    assert answer["replanned"] is True
    assert [(r.status, lots(r)) for r in results] == [
        ("reserved", [("H1", "6.000"), ("H2", "2.000")]),
        ("reserved", [("H2", "5.000")]),
    ]
    assert selectors.invariant_violations() == []
    level = StockLevel.objects.get(ingredient__sku="ham")
    assert (level.on_hand, level.reserved) == (D(20), D(17))
    (changed,) = OutboxEvent.objects.filter(type="stock.level_changed", payload__reserved="17.000")
    assert changed.payload["available"] == "3.000"
    # The events of the stale plan were taken back (events_unpublish): one per request, with one audit entry each.
    created = OutboxEvent.objects.filter(type="stock.reservation_created", payload__transaction_id__in=["a", "b"])
    assert sorted(created.values_list("payload__transaction_id", flat=True)) == ["a", "b"]
    published = AuditEntry.objects.filter(kind="published", event_type="stock.reservation_created")
    assert sorted(published.filter(event_id__in=created.values("event_id")).values_list("entity_key", flat=True)) == [
        "a",
        "b",
    ]
    assert published.count() == created.count() + 1  # and the other reservation's own


@pytest.mark.django_db(transaction=True)
def test_a_plan_that_still_fits_stands_though_the_stock_moved(monkeypatch):
    """Plenty left after the other reservation: every take still fits in its batch, so the plan stands."""
    supply = f"sku,quantity,best_before,lot\nham,100,{day(3)},H1\nham,10,{day(9)},H2\n"
    results, answer = reserve_many_while_another_reservation_commits(
        monkeypatch,
        supply,
        [ReservationRequest("a", [Item("ham", 8)]), ReservationRequest("b", [Item("ham", 5)], needed_by=day(5))],
    )
    assert answer["replanned"] is False
    assert [(r.status, lots(r)) for r in results] == [
        ("reserved", [("H1", "8.000")]),
        ("reserved", [("H2", "5.000")]),  # H1 expires before needed_by
    ]
    assert selectors.invariant_violations() == []
    level = StockLevel.objects.get(ingredient__sku="ham")
    assert (level.on_hand, level.reserved) == (D(110), D(17))
