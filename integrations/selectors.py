"""Reads of integrations: orders with their timeline, traceability per line and the meal plan."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from django.db.models import QuerySet

from integrations.errors import OrderNotFound
from integrations.models import Order, OrderTransition, PartnerMessage
from stock.models import Allocation, Recipe, RecipeIngredient


def bill_of_materials(codes: set[str]) -> dict[str, list[tuple[str, Decimal]]]:
    """Per recipe code: (sku, quantity per portion) of each ingredient, in one query."""
    recipes: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
    if codes:
        rows = RecipeIngredient.objects.filter(recipe__code__in=codes).values_list(
            "recipe__code", "ingredient__sku", "quantity_per_portion"
        )
        for code, sku, per_portion in rows.order_by("recipe__code", "ingredient__sku"):
            recipes[code].append((sku, per_portion))
    return recipes


def orders() -> QuerySet[Order]:
    """Orders for lists: newest first, without the heavy JSON columns."""
    return Order.objects.defer("delivery_address", "lines", "request_hash").order_by("-received_at", "-id")


def order_by_id(order_id: str) -> Order:
    order = Order.objects.filter(order_id=order_id).first()
    if order is None:
        raise OrderNotFound(f"No order {order_id!r}.")
    return order


def timeline(order: Order) -> list[dict]:
    return [
        {
            "from_status": step.from_status or None,
            "to_status": step.to_status,
            "occurred_at": step.occurred_at,
            "source": step.source,
            "detail": step.detail,
        }
        for step in OrderTransition.objects.filter(order=order).order_by("occurred_at", "id")
    ]


def partner_messages(order: Order) -> list[dict]:
    """Every partner message about the order, in and out, oldest first (raw bodies stay in the admin and API)."""
    return [
        {
            "id": message.id,
            "partner": message.partner,
            "direction": message.direction,
            "kind": message.kind,
            "message_id": message.message_id,
            "received_at": message.received_at,
            "raw_status": message.raw_status or None,
            "canonical_status": message.canonical_status or None,
            "status": message.status,
            "reason": message.reason or None,
        }
        for message in PartnerMessage.objects.filter(order=order).order_by("received_at", "id")
    ]


def _batches_by_sku(order_id: str) -> dict[str, list[dict]]:
    """The batches allocated to the order's reservation, per sku, first-expiring first."""
    by_sku: dict[str, list[dict]] = defaultdict(list)
    allocations = (
        Allocation.objects.filter(reservation__transaction_id=order_id)
        .select_related("batch__supplier", "ingredient")
        .order_by("ingredient__sku", "batch__best_before", "batch_id", "id")
    )
    for allocation in allocations:
        batch = allocation.batch
        by_sku[allocation.ingredient.sku].append(
            {
                "batch_id": batch.id,
                "lot": batch.lot,
                "supplier": batch.supplier.name if batch.supplier else None,
                "best_before": batch.best_before,
                "quantity": str(allocation.quantity),
                "open": allocation.open,
            }
        )
    return by_sku


def traceability(order: Order) -> list[dict]:
    """Per order line, each ingredient it needs and the batches, lots, suppliers and best-before dates allocated.

    Allocations are per sku for the whole order, so a sku two lines share shows the same batches on both.
    """
    batches = _batches_by_sku(order.order_id)
    recipes = bill_of_materials({line["recipe"] for line in order.lines if "recipe" in line})
    lines = []
    for index, line in enumerate(order.lines):
        if "recipe" in line:
            needs = [(sku, per_portion * line["portions"]) for sku, per_portion in recipes.get(line["recipe"], [])]
        else:
            needs = [(line["sku"], Decimal(line["quantity"]))]
        lines.append(
            {
                "line": index,
                **line,
                "ingredients": [
                    {"sku": sku, "quantity": format(quantity, "f"), "batches": batches.get(sku, [])}
                    for sku, quantity in needs
                ],
            }
        )
    return lines


def meal_plan(order: Order) -> list[dict]:
    """The order's recipes in the order to cook them: by the earliest best-before of their allocated ingredients.

    ``eat_by`` is that date (null while nothing is allocated: those recipes come last).
    """
    batches = _batches_by_sku(order.order_id)
    codes = {line["recipe"] for line in order.lines if "recipe" in line}
    recipes = bill_of_materials(codes)
    names = dict(Recipe.objects.filter(code__in=codes).values_list("code", "name")) if codes else {}
    plan = []
    for line in order.lines:
        if "recipe" not in line:
            continue
        dates: list[tuple[date, str]] = [
            (batch["best_before"], sku) for sku, _ in recipes.get(line["recipe"], []) for batch in batches.get(sku, [])
        ]
        first = min(dates) if dates else None
        plan.append(
            {
                "recipe": line["recipe"],
                "name": names.get(line["recipe"], line["recipe"]),
                "portions": line["portions"],
                "eat_by": first[0] if first else None,
                "limited_by": first[1] if first else None,
            }
        )
    plan.sort(key=lambda item: (item["eat_by"] is None, item["eat_by"] or date.max, item["recipe"]))
    for position, item in enumerate(plan, start=1):
        item["cook_order"] = position
    return plan


def order_document(order: Order) -> dict:
    """The order as ``GET /api/v1/orders/{order_id}/`` shows it."""
    return {
        "order_id": order.order_id,
        "status": order.status,
        "customer_reference": order.customer_reference,
        "delivery_date": order.delivery_date,
        "delivery_address": order.delivery_address,
        "received_at": order.received_at,
        "status_changed_at": order.status_changed_at,
        "lines": traceability(order),
        "timeline": timeline(order),
        "partner_messages": partner_messages(order),
    }
