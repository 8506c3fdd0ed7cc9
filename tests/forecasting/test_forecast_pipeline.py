"""The forecast pipeline end to end on PostgreSQL: history in the database, stock with batches and an open
reservation, supplier terms; the run stores the forecast, its suggestions, reports and events."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecasting.engine import LocalRunner
from forecasting.forecast import history, pipeline, steps
from forecasting.forecast.models import Forecast, HistoryDay, PurchaseSuggestion
from integrations.models import Order
from stock import services as stock_services
from stock.demo import load_catalogue, load_purchasing_terms
from stock.models import Supplier, SupplierIngredient
from supplychain.core.storage import get_storage
from supplychain.events import registry
from supplychain.events.models import OutboxEvent

AS_OF = date(2026, 12, 1)  # a Tuesday

pytestmark = pytest.mark.django_db


@pytest.fixture
def storage_dir(tmp_path):
    with override_settings(OBJECT_STORAGE={"BUCKET": "", "ENDPOINT_URL": None, "REGION": None, "LOCAL_DIR": tmp_path}):
        yield tmp_path


@pytest.fixture
def world(storage_dir):
    load_catalogue()
    load_purchasing_terms()
    history.store_demo_history(
        days=history.demo_days(end=AS_OF, days=84, recipes=["cheesy-onion-bake", "ham-mushroom-pasta"], seed=3)
    )
    rows = (
        "sku,quantity,best_before,lot,supplier\n"
        "ham,500,2026-12-03,H1,Farm Fresh Ltd\npasta,3000000,2027-06-01,P1,Valley Growers\n"
    )
    stock_services.ingest_receipt(key="receipts/t.csv", open_stream=lambda: io.BytesIO(rows.encode()), source="upload")
    stock_services.reserve_stock(
        transaction_id="order-1",
        items=[stock_services.Item("pasta", Decimal(1000))],
        needed_by=AS_OF + timedelta(days=2),
    )


def test_the_pipeline_publishes_a_forecast_with_orderable_suggestions_reports_and_events(world, storage_dir):
    execution = pipeline.run_locally({"as_of": AS_OF.isoformat(), "horizon_days": 14}, name="run-1")
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    types = execution.event_types()
    assert "MapIterationSucceeded" in types or types.count("TaskSucceeded") >= 10
    forecast = Forecast.objects.get(run_name="run-1")
    assert forecast.model == "holt_winters"
    assert forecast.details["network"] == {"factories": ["A", "B"]}  # a Tuesday: both factories
    points = list(forecast.points.order_by("day"))
    assert [p.day for p in points] == [AS_OF + timedelta(days=k) for k in range(1, 15)]
    assert all(p.lower <= p.orders <= p.upper for p in points)
    assert 150 < sum(p.orders for p in points) / 14 < 600  # demo level ~300 orders a day
    assert len(forecast.history) == 84

    projection = forecast.stock_projection
    assert projection["ham"]["expiring_unused"] == [] or Decimal(projection["ham"]["shortfall_total"]) > 0
    assert projection["pasta"]["shortfall_total"] == "0"  # plenty on hand
    assert projection["pasta"]["reserved"] == "1000.000"

    suggestions = {s.sku: s for s in PurchaseSuggestion.objects.filter(forecast=forecast)}
    assert "pasta" not in suggestions
    for sku, suggestion in suggestions.items():
        terms = SupplierIngredient.objects.select_related("supplier").get(ingredient__sku=sku)
        assert suggestion.supplier_code == terms.supplier.code
        assert suggestion.quantity % terms.pack_size == 0
        assert suggestion.quantity >= max(terms.minimum_order_quantity, suggestion.shortfall)
        lead = timedelta(days=terms.effective_lead_time_days)
        assert suggestion.arrives == suggestion.order_by + lead
        assert suggestion.order_by == max(AS_OF, suggestion.needed_by - lead)
    assert {"ham", "mushroom", "cheese", "cream", "onion"} <= set(suggestions)  # nothing else on hand

    published = OutboxEvent.objects.get(type="forecast.published")
    assert published.payload["forecast_id"] == forecast.pk and len(published.payload["points"]) == 14
    orders = OutboxEvent.objects.filter(type="forecast.purchase_order_suggested")
    assert {e.payload["supplier_code"] for e in orders} == {"farm-fresh-ltd", "valley-growers"}
    for event in [published, *orders]:
        registry.validate(event.type, event.version, event.payload)

    report = json.loads(get_storage().get(forecast.report_keys[0]))
    assert report["run_name"] == "run-1" and len(report["suggestions"]) == len(suggestions)
    csv_lines = get_storage().get(forecast.report_keys[1]).decode().splitlines()
    assert len(csv_lines) == 1 + 14 + len(suggestions)

    # Publishing the same run again (a redrive, a repeat) stores and announces nothing more.
    again = steps.publish({"run_name": "run-1"})
    assert again["forecast_id"] == forecast.pk
    assert OutboxEvent.objects.filter(type="forecast.published").count() == 1


def test_load_history_counts_live_orders_for_days_the_history_table_lacks():
    HistoryDay.objects.create(day=date(2026, 11, 1), orders=7, portions={"a": 14})
    now = timezone.now()
    for number, (day, status, lines) in enumerate(
        [
            (
                date(2026, 11, 2),
                Order.Status.RECEIVED,
                [{"recipe": "a", "portions": 2}, {"recipe": "b", "portions": 1}],
            ),
            (date(2026, 11, 2), Order.Status.DELIVERED, [{"sku": "salt", "quantity": "1"}]),
            (date(2026, 11, 2), Order.Status.CANCELLED, [{"recipe": "a", "portions": 4}]),
            (date(2026, 11, 1), Order.Status.RECEIVED, [{"recipe": "a", "portions": 4}]),  # the table wins
        ]
    ):
        Order.objects.create(
            order_id=f"o-{number}",
            customer_reference="c",
            delivery_date=day,
            delivery_address={},
            lines=lines,
            request_hash="x",
            status=status,
            received_at=now,
            status_changed_at=now,
        )
    result = steps.load_history({"start": "2026-11-01", "end": "2026-11-03"})
    assert result["days"] == [
        {"day": "2026-11-01", "orders": 7, "portions": {"a": 14}},
        {"day": "2026-11-02", "orders": 2, "portions": {"a": 2, "b": 1}},
    ]
    merged = steps.merge_history({"batches": [result], "as_of": "2026-11-03"})
    assert merged["orders"] == [7, 2, 0]


def fake_steps(calls: list[str]) -> dict:
    """The definition's routing with the models replaced by quick functions that record their calls."""

    def volume(event):
        calls.append(f"volume:{event['model']}")
        return {"model": event["model"], "points": []}

    return {
        "forecast.plan": steps.plan,
        "forecast.load_history": lambda event: {"days": []},
        "forecast.merge_history": lambda event: {"orders": [], "portions": []},
        "forecast.volume": volume,
        "forecast.recipe_mix": lambda event: calls.append("mix") or {"shares": {}},
        "forecast.compare_models": lambda event: calls.append("compare") or {"compared": True},
        "forecast.ingredient_demand": lambda event: {"days": {}},
        "forecast.project_stock": lambda event: {"ingredients": {}},
        "forecast.purchase_suggestions": lambda event: {"suggestions": []},
        "forecast.publish": lambda event: {"network": event["network"], "models": event["models"]},
    }


@pytest.mark.parametrize(
    ("as_of", "factories"), [("2026-12-04", ["A"]), ("2026-12-07", ["B"]), ("2026-12-05", ["A", "B"])]
)
def test_network_configuration_is_chosen_by_weekday(as_of, factories):
    execution = LocalRunner(fake_steps([])).run(pipeline.definition(), {"as_of": as_of, "history_days": 60})
    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output["network"] == {"factories": factories}
    assert len(
        [e for e in execution.events if e["type"] == "TaskStateEntered" and e["state"].endswith("LoadBatch")]
    ) in (0, 3)


def test_the_new_model_flag_runs_both_models_and_compares_them_without_a_deploy():
    calls: list[str] = []
    flagged = LocalRunner(fake_steps(calls)).run(
        pipeline.definition(), {"as_of": "2026-12-01", "flags": {"volume_model_v2": True}}
    )
    assert flagged.status == "SUCCEEDED", flagged.cause
    assert sorted(calls) == ["compare", "mix", "volume:auto", "volume:holt_winters_v2"]
    assert flagged.output["models"]["comparison"] == {"compared": True}
    calls.clear()
    plain = LocalRunner(fake_steps(calls)).run(pipeline.definition(), {"as_of": "2026-12-01"})
    assert sorted(calls) == ["mix", "volume:auto"] and "comparison" not in plain.output["models"]


def test_plan_cuts_the_history_into_ranges_that_cover_it_once():
    plan = steps.plan({"as_of": "2026-12-01", "history_days": 60, "batch_days": 28})
    assert plan["ranges"] == [
        {"start": "2026-10-03", "end": "2026-10-30"},
        {"start": "2026-10-31", "end": "2026-11-27"},
        {"start": "2026-11-28", "end": "2026-12-01"},
    ]
    assert plan["weekday"] == "Tuesday" and plan["flags"] == {"volume_model_v2": False}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 5000) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    event=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                key: json_values
                for key in ("as_of", "history_days", "batch_days", "horizon_days", "interval", "model", "flags")
            },
        ),
    )
)
def test_plan_refuses_bad_input_with_a_named_error_and_accepts_good_input(event):
    try:
        plan = steps.plan(event)
    except steps.ForecastInputInvalid as error:
        message = str(error)
        plan = None
    if plan is None:
        assert message
        return
    covered = sum((date.fromisoformat(r["end"]) - date.fromisoformat(r["start"])).days + 1 for r in plan["ranges"])
    assert covered == plan["history_days"]


def test_admin_shows_the_forecast_with_its_chart(world, admin_client):
    execution = pipeline.run_locally({"as_of": AS_OF.isoformat(), "horizon_days": 7}, name="run-admin")
    assert execution.status == "SUCCEEDED", execution.cause
    forecast = Forecast.objects.get(run_name="run-admin")
    page = admin_client.get(f"/admin/forecasting/forecast/{forecast.pk}/change/").content.decode()
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in page
    assert 'class="interval"' in page and 'class="forecast"' in page and 'class="history"' in page
    assert "<script" not in page.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert admin_client.get("/admin/forecasting/purchasesuggestion/").status_code == 200
    assert admin_client.get("/admin/stock/supplieringredient/").status_code == 200
    assert Supplier.objects.get(code="valley-growers").lead_time_days == 3


def test_the_definition_is_accepted_by_the_engine_as_a_pipeline_and_a_run_starts():
    from forecasting.models import Run
    from forecasting.services import start_run

    saved = pipeline.install()
    assert saved.name == "order-simulation-forecast" and saved.definition == pipeline.DEFINITION
    run, created = start_run(pipeline=saved.name, input={"as_of": "2026-12-01"}, name="celery-run-1")
    assert created and Run.objects.filter(pk=run.pk, name="celery-run-1").exists()
