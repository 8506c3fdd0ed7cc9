"""From forecast orders to orderable purchases, on numbers worked out by hand (pure: no database)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from forecasting.forecast import demand
from forecasting.forecast.demand import Terms

AS_OF = date(2026, 12, 1)


def test_recipe_mix_shares_and_portions_per_order_come_from_the_recent_window():
    portions = [{"old": 100}] + [{"a": 30, "b": 10}] * 2
    mix = demand.recipe_mix(portions, [50, 20, 20], window_days=2)
    assert mix == {"window_days": 2, "portions_per_order": 2.0, "shares": {"a": 0.75, "b": 0.25}}


def test_ingredient_demand_expands_orders_through_the_bill_of_materials():
    mix = {"portions_per_order": 2.0, "shares": {"pasta-bake": 0.5, "soup": 0.5, "mystery": 0.0}}
    bom = {"pasta-bake": {"pasta": 100, "cheese": 30}, "soup": {"onion": 1, "cheese": 10}}
    result = demand.ingredient_demand(
        days=["2026-12-02", "2026-12-03"], orders=[10, 20], mix=mix, bill_of_materials=bom
    )
    assert result["days"]["2026-12-02"] == {"cheese": 400.0, "onion": 10.0, "pasta": 1000.0}
    assert result["totals"] == {"cheese": 1200.0, "onion": 30.0, "pasta": 3000.0}
    assert result["unknown_recipes"] == ["mystery"]


def days(*quantities, sku="milk"):
    return {f"2026-12-{2 + n:02d}": {sku: q} for n, q in enumerate(quantities)}


def test_projection_uses_first_expiring_batches_first_and_reports_what_expires_unused():
    stock = {
        "milk": {
            "batches": [
                {"lot": "late", "best_before": "2026-12-20", "available": "10"},
                {"lot": "soon", "best_before": "2026-12-03", "available": "8"},
            ]
        }
    }
    result = demand.project_stock(as_of=AS_OF, demand_days=days(3, 3, 3, 3, 3), stock=stock)["ingredients"]["milk"]
    # 12-02 and 12-03 take 6 of "soon"; on 12-04 its 2 left have expired; "late" covers 9 of the last 3 days.
    assert result["expiring_unused"] == [{"lot": "soon", "best_before": "2026-12-03", "quantity": "2.000"}]
    assert result["shortfall_total"] == "0"
    assert result["left_at_end"] == "1.000"


def test_projection_finds_the_first_short_day_and_the_whole_shortfall():
    stock = {"milk": {"batches": [{"lot": "x", "best_before": "2027-01-01", "available": "5"}]}}
    result = demand.project_stock(as_of=AS_OF, demand_days=days(3, 3, 3), stock=stock)["ingredients"]["milk"]
    assert result["first_short_day"] == "2026-12-03"
    assert result["shortfall_by_day"] == {"2026-12-03": "1.000", "2026-12-04": "3.000"}
    assert result["shortfall_total"] == "4.000"


def test_open_reservations_are_part_of_the_forecast_demand_not_added_to_it():
    stock = {
        "milk": {
            "batches": [{"lot": "x", "best_before": "2027-01-01", "available": "2"}],  # 6 more are reserved on it
            "reservations": {"2026-12-02": "6"},
        }
    }
    result = demand.project_stock(as_of=AS_OF, demand_days=days(7, 2), stock=stock)["ingredients"]["milk"]
    # 12-02: forecast 7 of which 6 are reserved orders -> 1 more from the 2 free; 12-03: 2 needed, 1 left.
    assert result["reserved"] == "6"
    assert result["shortfall_by_day"] == {"2026-12-03": "1.000"}


def test_an_ingredient_with_no_stock_is_short_from_the_first_day():
    result = demand.project_stock(as_of=AS_OF, demand_days=days(4, sku="salt"), stock={})["ingredients"]["salt"]
    assert result["first_short_day"] == "2026-12-02" and result["shortfall_total"] == "4.000"


def test_quantity_is_rounded_up_to_whole_packs_and_at_least_the_minimum_order():
    assert demand.orderable_quantity(Decimal("7"), pack_size=Decimal("5"), minimum_order_quantity=Decimal(0)) == (
        Decimal("10.000"),
        2,
    )
    assert demand.orderable_quantity(Decimal("7"), pack_size=Decimal("5"), minimum_order_quantity=Decimal(22)) == (
        Decimal("25.000"),
        5,
    )
    assert demand.orderable_quantity(Decimal("10"), pack_size=Decimal("5"), minimum_order_quantity=Decimal(0))[1] == 2
    assert demand.orderable_quantity(Decimal("0"), pack_size=Decimal("5"), minimum_order_quantity=Decimal(9)) == (
        Decimal(0),
        0,
    )


quantities = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("100000"), places=3)


@given(shortfall=quantities, pack=quantities, minimum=st.decimals(min_value=0, max_value=100000, places=3))
def test_orderable_quantity_is_the_smallest_whole_pack_count_covering_shortfall_and_minimum(shortfall, pack, minimum):
    quantity, packs = demand.orderable_quantity(shortfall, pack_size=pack, minimum_order_quantity=minimum)
    wanted = max(shortfall, minimum)
    assert quantity == (pack * packs).quantize(Decimal("0.001"))
    assert quantity >= wanted
    assert pack * (packs - 1) < wanted  # one pack fewer would not do


def projection(first_short_day: str, total: str) -> dict:
    return {"ingredients": {"milk": {"shortfall_total": total, "first_short_day": first_short_day}}}


def test_order_by_is_lead_time_before_the_first_short_day():
    terms = {"milk": [Terms("dairy", Decimal(6), Decimal(12), 3)]}
    (suggestion,) = demand.purchase_suggestions(as_of=AS_OF, projection=projection("2026-12-10", "13"), terms=terms)
    assert suggestion["supplier_code"] == "dairy"
    assert (suggestion["quantity"], suggestion["packs"]) == ("18.000", 3)
    assert (suggestion["order_by"], suggestion["arrives"], suggestion["needed_by"]) == (
        "2026-12-07",
        "2026-12-10",
        "2026-12-10",
    )
    assert suggestion["late"] is False


def test_a_shortage_sooner_than_the_lead_time_is_ordered_today_and_flagged_late():
    terms = {"milk": [Terms("dairy", Decimal(1), Decimal(0), 5)]}
    (suggestion,) = demand.purchase_suggestions(as_of=AS_OF, projection=projection("2026-12-03", "4"), terms=terms)
    assert (suggestion["order_by"], suggestion["arrives"], suggestion["late"]) == ("2026-12-01", "2026-12-06", True)


def test_the_preferred_supplier_wins_then_the_shortest_lead_time():
    slow_preferred = Terms("slow", Decimal(1), Decimal(0), 6, preferred=True)
    fast = Terms("fast", Decimal(1), Decimal(0), 1)
    faster = Terms("faster", Decimal(1), Decimal(0), 0)
    assert demand.choose_terms([fast, slow_preferred, faster]).supplier_code == "slow"
    assert demand.choose_terms([fast, faster]).supplier_code == "faster"


def test_an_ingredient_no_supplier_sells_is_still_suggested_without_a_supplier_and_nothing_short_is_not():
    result = demand.purchase_suggestions(
        as_of=AS_OF,
        projection={
            "ingredients": {
                "salt": {"shortfall_total": "2.5", "first_short_day": "2026-12-02"},
                "milk": {"shortfall_total": "0", "first_short_day": None},
            }
        },
        terms={},
    )
    assert [(s["sku"], s["supplier_code"], s["quantity"]) for s in result] == [("salt", "", "3.000")]
