"""Master data through the API: ingredients, recipes and suppliers listed, read and upserted by natural key."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stock import services
from stock.models import Batch, Ingredient, Recipe, Supplier, supplier_code_from_name
from supplychain.core.bootstrap import bootstrap, issue_token
from supplychain.core.identifiers import is_identifier
from supplychain.events.models import OutboxEvent
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = pytest.mark.django_db

HAM = {"name": "Sliced ham", "unit": "g", "low_stock_threshold": "500"}


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def credentials():
    return bootstrap(demo=False)


@pytest.fixture
def operations(credentials):
    return client_with(credentials.operations_token)


@pytest.fixture
def platform(credentials):
    return client_with(credentials.api_token)


@pytest.fixture
def erp(credentials):
    return client_with(issue_token(username="erp-sync", role="erp", create_user=True).token)


def events(event_type: str) -> list[dict]:
    return [event.payload for event in OutboxEvent.objects.filter(type=event_type).order_by("id")]


def writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "COPY"))]


def names(response, field: str) -> bool:
    """Whether the error body names ``field`` (a list's own errors may sit under ``field.non_field_errors``)."""
    return any(key == field or key == f"{field}.non_field_errors" for key in response.json()["errors"])


def day(offset):
    return (timezone.localdate() + timedelta(days=offset)).isoformat()


# ---- Ingredients ----------------------------------------------------------------------------------


def test_put_creates_an_ingredient_with_201_and_the_same_put_again_is_200_changing_nothing(operations):
    first = operations.put("/api/v1/stock/ingredients/ham/", HAM, format="json")
    assert first.status_code == 201, first.content
    assert first.json() == {"sku": "ham", "name": "Sliced ham", "unit": "g", "low_stock_threshold": "500.000"}
    with CaptureQueriesContext(connection) as queries:
        again = operations.put("/api/v1/stock/ingredients/ham/", HAM, format="json")
    assert (again.status_code, again.json()) == (200, first.json())
    assert writes(queries) == []  # unchanged: nothing written, nothing published
    assert events("stock.ingredient_changed") == [
        {"sku": "ham", "name": "Sliced ham", "unit": "g", "low_stock_threshold": "500.000", "change": "created"}
    ]
    assert operations.get("/api/v1/stock/ingredients/ham/").json() == first.json()


def test_put_changes_an_ingredient_and_publishes_one_event(operations):
    operations.put("/api/v1/stock/ingredients/ham/", HAM, format="json")
    changed = operations.put("/api/v1/stock/ingredients/ham/", {**HAM, "name": "Ham, sliced"}, format="json")
    assert changed.status_code == 200
    assert changed.json()["name"] == "Ham, sliced"
    assert [e["change"] for e in events("stock.ingredient_changed")] == ["created", "updated"]
    assert Ingredient.objects.get(sku="ham").name == "Ham, sliced"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**HAM, "name": "x" * 201}, "name"),
        ({**HAM, "name": ""}, "name"),
        ({**HAM, "name": "ham\x00"}, "name"),
        ({**HAM, "unit": "stone"}, "unit"),
        ({**HAM, "low_stock_threshold": "-1"}, "low_stock_threshold"),
        ({**HAM, "low_stock_threshold": "100000000000"}, "low_stock_threshold"),  # 11 digits: the column holds 11
        ({**HAM, "low_stock_threshold": "0.0001"}, "low_stock_threshold"),
        ({**HAM, "low_stock_threshold": "NaN"}, "low_stock_threshold"),
        ({**HAM, "sku": "bacon"}, "sku"),
        ({"unit": "g"}, "name"),
    ],
)
def test_bad_ingredient_bodies_get_400_naming_the_field_and_store_nothing(operations, body, field):
    response = operations.put("/api/v1/stock/ingredients/ham/", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["type"] == "validation_error"
    assert field in response.json()["errors"]
    assert not Ingredient.objects.exists()
    assert not OutboxEvent.objects.exists()


def test_a_number_past_what_json_floats_hold_is_a_400(operations):
    body = b'{"name": "Ham", "unit": "g", "low_stock_threshold": 1e400}'
    response = operations.generic("PUT", "/api/v1/stock/ingredients/ham/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "low_stock_threshold" in response.json()["errors"]
    assert not Ingredient.objects.exists()


@pytest.mark.parametrize("key", ["a.b", "-ham", "x" * 65, "caf%C3%A9"])
def test_keys_outside_the_alphabet_are_not_routes(operations, key):
    response = operations.put(f"/api/v1/stock/ingredients/{key}/", HAM, format="json")
    assert response.status_code == 404
    assert response.json()["type"] == "not_found"
    assert not Ingredient.objects.exists()


def test_natural_keys_are_identifiers_of_the_one_alphabet(operations):
    for key in ("ham", "SKU-0042_b", "9" * 64):
        assert is_identifier(key)
        assert operations.put(f"/api/v1/stock/ingredients/{key}/", HAM, format="json").status_code == 201


def test_the_unit_of_an_ingredient_with_batches_cannot_change(operations):
    operations.put("/api/v1/stock/ingredients/ham/", HAM, format="json")
    assert operations.put("/api/v1/stock/ingredients/ham/", {**HAM, "unit": "kg"}, format="json").status_code == 200
    services.ingest_receipt(
        key="r.csv", open_stream=csv_opener(f"sku,quantity,best_before\nham,5,{day(3)}\n"), source="upload"
    )
    response = operations.put("/api/v1/stock/ingredients/ham/", {**HAM, "unit": "g"}, format="json")
    assert response.status_code == 409
    assert response.json()["type"] == "master_data_conflict"
    assert list(response.json()["errors"]) == ["unit"]
    assert Ingredient.objects.get(sku="ham").unit == "kg"


def test_list_is_paginated_filtered_and_searchable(operations):
    for sku, name, unit in [("ham", "Sliced ham", "g"), ("cream", "Double cream", "ml"), ("onion", "Onion", "unit")]:
        IngredientFactory(sku=sku, name=name, unit=unit)
    page = operations.get("/api/v1/stock/ingredients/", {"page_size": 2}).json()
    assert page["count"] == 3 and [i["sku"] for i in page["results"]] == ["cream", "ham"]
    assert page["next"]
    assert [i["sku"] for i in operations.get("/api/v1/stock/ingredients/", {"search": "CREAM"}).json()["results"]] == [
        "cream"
    ]
    assert [i["sku"] for i in operations.get("/api/v1/stock/ingredients/", {"unit": "unit"}).json()["results"]] == [
        "onion"
    ]
    by_sku = operations.get("/api/v1/stock/ingredients/", {"sku": "onion,ham"}).json()["results"]
    assert [i["sku"] for i in by_sku] == ["ham", "onion"]
    assert operations.get("/api/v1/stock/ingredients/", {"unit": "stone"}).status_code == 400


@pytest.mark.parametrize(
    ("url", "query"),
    [
        ("/api/v1/stock/ingredients/", {"sku": "ham,a\x00b"}),
        ("/api/v1/stock/ingredients/", {"sku": "x" * 65}),
        ("/api/v1/stock/ingredients/", {"search": "a\x00b"}),
        ("/api/v1/stock/recipes/", {"code": "a\x00"}),
        ("/api/v1/stock/recipes/", {"ingredient": "a\x00"}),
        ("/api/v1/stock/suppliers/", {"code": "a\x00"}),
    ],
)
def test_bad_filter_values_get_400_not_a_database_error(operations, url, query):
    response = operations.get(url, query)
    assert response.status_code == 400, response.content
    assert response.json()["type"] == "validation_error"
    assert operations.get("/api/v1/stock/ingredients/nope/").status_code == 404


# ---- Who may ----------------------------------------------------------------------------------------


def test_platform_reads_ingredients_and_recipes_but_cannot_master_them(platform):
    assert platform.get("/api/v1/stock/ingredients/").status_code == 200
    assert platform.get("/api/v1/stock/recipes/").status_code == 200
    for url, body in [
        ("/api/v1/stock/ingredients/ham/", HAM),
        ("/api/v1/stock/ingredients/bulk/", {"items": [{"sku": "ham", **HAM}]}),
        ("/api/v1/stock/suppliers/farm-a/", {"name": "Farm A"}),
        ("/api/v1/stock/recipes/r/", {"name": "R", "lines": [{"sku": "ham", "quantity_per_portion": 1}]}),
    ]:
        method = platform.post if url.endswith("bulk/") else platform.put
        response = method(url, body, format="json")
        assert response.status_code == 403, url
        assert "stock.add_" in response.json()["detail"]
    assert platform.get("/api/v1/stock/suppliers/").status_code == 403
    assert not Ingredient.objects.exists() and not Supplier.objects.exists()


def test_the_erp_role_masters_data_in_bulk(erp):
    response = erp.post("/api/v1/stock/ingredients/bulk/", {"items": [{"sku": "ham", **HAM}]}, format="json")
    assert response.status_code == 200, response.content
    assert erp.get("/api/v1/stock/suppliers/").status_code == 200


def test_a_user_without_a_role_may_not_read_master_data():
    user = get_user_model().objects.create_user("nobody")
    nobody = client_with(Token.objects.create(user=user).key)
    for url in ("/api/v1/stock/ingredients/", "/api/v1/stock/recipes/", "/api/v1/stock/suppliers/"):
        assert nobody.get(url).status_code == 403


# ---- Bulk ---------------------------------------------------------------------------------------------


def bulk_items(n: int, **changes) -> list[dict]:
    return [{"sku": f"sku-{i:04d}", "name": f"Ingredient {i}", "unit": "g", **changes} for i in range(n)]


def test_bulk_upsert_reports_each_and_only_changed_entities_write_and_publish(operations):
    operations.put("/api/v1/stock/ingredients/sku-0000/", {"name": "Ingredient 0", "unit": "g"}, format="json")
    operations.put("/api/v1/stock/ingredients/sku-0001/", {"name": "Old name", "unit": "g"}, format="json")
    before = OutboxEvent.objects.count()
    response = operations.post("/api/v1/stock/ingredients/bulk/", {"items": bulk_items(3)}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "created": 1,
        "updated": 1,
        "unchanged": 1,
        "results": [
            {"sku": "sku-0000", "change": "unchanged"},
            {"sku": "sku-0001", "change": "updated"},
            {"sku": "sku-0002", "change": "created"},
        ],
    }
    assert [(e["sku"], e["change"]) for e in events("stock.ingredient_changed")][2:] == [
        ("sku-0002", "created"),
        ("sku-0001", "updated"),
    ]
    assert OutboxEvent.objects.count() == before + 2
    with CaptureQueriesContext(connection) as queries:
        again = operations.post("/api/v1/stock/ingredients/bulk/", {"items": bulk_items(3)}, format="json")
    assert again.json()["unchanged"] == 3
    assert writes(queries) == []
    assert OutboxEvent.objects.count() == before + 2


def test_bulk_writes_are_set_based_whatever_the_number_of_entities(operations):
    def count_queries(items):
        with CaptureQueriesContext(connection) as queries:
            assert (
                operations.post("/api/v1/stock/ingredients/bulk/", {"items": items}, format="json").status_code == 200
            )
        return len(queries)

    few, many = count_queries(bulk_items(3)), count_queries(bulk_items(1000, unit="kg")[3:])
    assert many <= few + 2  # the outbox and audit rows of 997 events, as of 2, in their own few statements
    assert Ingredient.objects.filter(unit="kg").count() == 997
    assert len(events("stock.ingredient_changed")) == 1000


def test_bulk_refuses_more_than_1000_duplicates_and_bad_items_writing_nothing(operations):
    too_many = operations.post("/api/v1/stock/ingredients/bulk/", {"items": bulk_items(1001)}, format="json")
    assert too_many.status_code == 400 and names(too_many, "items")
    twice = bulk_items(2)
    twice[1]["sku"] = twice[0]["sku"]
    repeated = operations.post("/api/v1/stock/ingredients/bulk/", {"items": twice}, format="json")
    assert repeated.status_code == 400 and list(repeated.json()["errors"]) == ["items.1.sku"]
    bad = bulk_items(3)
    bad[2]["unit"] = "stone"
    bad[1]["sku"] = "bulk"  # the bulk endpoint's own name is no key
    refused = operations.post("/api/v1/stock/ingredients/bulk/", {"items": bad}, format="json")
    assert refused.status_code == 400
    assert set(refused.json()["errors"]) == {"items.1.sku", "items.2.unit"}
    empty = operations.post("/api/v1/stock/ingredients/bulk/", {"items": []}, format="json")
    assert empty.status_code == 400 and names(empty, "items")
    assert not Ingredient.objects.exists() and not OutboxEvent.objects.exists()


def test_bulk_unit_change_of_a_stocked_ingredient_refuses_the_whole_call(operations):
    operations.post("/api/v1/stock/ingredients/bulk/", {"items": bulk_items(2)}, format="json")
    services.ingest_receipt(
        key="r.csv", open_stream=csv_opener(f"sku,quantity,best_before\nsku-0001,5,{day(3)}\n"), source="upload"
    )
    response = operations.post("/api/v1/stock/ingredients/bulk/", {"items": bulk_items(3, unit="kg")}, format="json")
    assert response.status_code == 409
    assert list(response.json()["errors"]) == ["items.1.unit"]
    assert not Ingredient.objects.filter(unit="kg").exists()
    assert not Ingredient.objects.filter(sku="sku-0002").exists()


# ---- Recipes ------------------------------------------------------------------------------------------

PASTA = {
    "name": "Ham pasta",
    "lines": [{"sku": "ham", "quantity_per_portion": "60"}, {"sku": "pasta", "quantity_per_portion": "125.5"}],
}


@pytest.fixture
def ingredients():
    for sku, unit in [("ham", "g"), ("pasta", "g"), ("cream", "ml")]:
        IngredientFactory(sku=sku, unit=unit)


def test_put_recipe_with_its_bill_of_materials_and_again_changes_nothing(operations, ingredients):
    first = operations.put("/api/v1/stock/recipes/ham-pasta/", PASTA, format="json")
    assert first.status_code == 201, first.content
    assert first.json() == {
        "code": "ham-pasta",
        "name": "Ham pasta",
        "lines": [
            {"sku": "ham", "quantity_per_portion": "60.000", "unit": "g"},
            {"sku": "pasta", "quantity_per_portion": "125.500", "unit": "g"},
        ],
    }
    reordered = {**PASTA, "lines": list(reversed(PASTA["lines"]))}
    with CaptureQueriesContext(connection) as queries:
        again = operations.put("/api/v1/stock/recipes/ham-pasta/", reordered, format="json")
    assert (again.status_code, again.json()) == (200, first.json())
    assert writes(queries) == []
    assert events("stock.recipe_changed") == [
        {
            "code": "ham-pasta",
            "name": "Ham pasta",
            "lines": [
                {"sku": "ham", "quantity_per_portion": "60.000"},
                {"sku": "pasta", "quantity_per_portion": "125.500"},
            ],
            "change": "created",
        }
    ]


def test_put_recipe_replaces_its_lines(operations, ingredients):
    operations.put("/api/v1/stock/recipes/ham-pasta/", PASTA, format="json")
    lines = [{"sku": "pasta", "quantity_per_portion": "100"}, {"sku": "cream", "quantity_per_portion": "40"}]
    changed = operations.put("/api/v1/stock/recipes/ham-pasta/", {**PASTA, "lines": lines}, format="json")
    assert changed.status_code == 200
    assert [(line["sku"], line["quantity_per_portion"]) for line in changed.json()["lines"]] == [
        ("cream", "40.000"),
        ("pasta", "100.000"),
    ]
    recipe = Recipe.objects.get(code="ham-pasta")
    assert sorted(recipe.lines.values_list("ingredient__sku", flat=True)) == ["cream", "pasta"]
    assert [e["change"] for e in events("stock.recipe_changed")] == ["created", "updated"]
    found = operations.get("/api/v1/stock/recipes/", {"ingredient": "cream"}).json()["results"]
    assert [r["code"] for r in found] == ["ham-pasta"]
    assert operations.get("/api/v1/stock/recipes/", {"ingredient": "ham"}).json()["count"] == 0


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        ([{"sku": "ham", "quantity_per_portion": "60"}, {"sku": "caviar", "quantity_per_portion": "1"}], "lines.1.sku"),
        ([{"sku": "ham", "quantity_per_portion": "0"}], "lines.0.quantity_per_portion"),
        ([{"sku": "ham", "quantity_per_portion": "1e12"}], "lines.0.quantity_per_portion"),
        ([{"sku": "ham", "quantity_per_portion": "1"}, {"sku": "ham", "quantity_per_portion": "2"}], "lines"),
        ([], "lines"),
        ([{"sku": "ham", "quantity_per_portion": "1"}] * 201, "lines"),
    ],
)
def test_bad_bills_of_materials_get_400_naming_the_line(operations, ingredients, lines, field):
    response = operations.put("/api/v1/stock/recipes/ham-pasta/", {**PASTA, "lines": lines}, format="json")
    assert response.status_code == 400, response.content
    assert names(response, field)
    assert not Recipe.objects.exists() and not OutboxEvent.objects.exists()


def test_bulk_recipes_name_the_unknown_sku_by_item_and_line(operations, ingredients):
    items = [
        {"code": "a", **PASTA},
        {"code": "b", "name": "B", "lines": [{"sku": "nope", "quantity_per_portion": "1"}]},
    ]
    refused = operations.post("/api/v1/stock/recipes/bulk/", {"items": items}, format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"] == {"items.1.lines.0.sku": ["Unknown sku 'nope'."]}
    assert not Recipe.objects.exists()
    items[1]["lines"][0]["sku"] = "cream"
    applied = operations.post("/api/v1/stock/recipes/bulk/", {"items": items}, format="json")
    assert applied.json()["created"] == 2
    assert operations.post("/api/v1/stock/recipes/bulk/", {"items": items}, format="json").json()["unchanged"] == 2


# ---- Suppliers ----------------------------------------------------------------------------------------


def test_put_supplier_by_code_and_names_stay_unique(operations):
    created = operations.put("/api/v1/stock/suppliers/SUP-0042/", {"name": "Northern Dairies"}, format="json")
    assert (created.status_code, created.json()) == (201, {"code": "SUP-0042", "name": "Northern Dairies"})
    assert operations.put("/api/v1/stock/suppliers/SUP-0042/", {"name": "Northern Dairies"}).status_code == 200
    taken = operations.put("/api/v1/stock/suppliers/SUP-0043/", {"name": "Northern Dairies"}, format="json")
    assert taken.status_code == 409
    assert list(taken.json()["errors"]) == ["name"]
    renamed = operations.put("/api/v1/stock/suppliers/SUP-0042/", {"name": "Northern Dairies Ltd"}, format="json")
    assert renamed.json()["name"] == "Northern Dairies Ltd"
    assert [(e["code"], e["change"]) for e in events("stock.supplier_changed")] == [
        ("SUP-0042", "created"),
        ("SUP-0042", "updated"),
    ]
    assert operations.get("/api/v1/stock/suppliers/", {"search": "dairies"}).json()["count"] == 1


def test_a_supplier_first_named_by_a_receipt_gets_a_code_from_its_name(operations):
    IngredientFactory(sku="ham")
    Supplier.objects.create(code="farm-a", name="Farm-A")
    text = f"sku,quantity,best_before,lot,supplier\nham,5,{day(3)},L1,Farm A\nham,5,{day(3)},L2,Valley Growers\n"
    services.ingest_receipt(key="r.csv", open_stream=csv_opener(text), source="upload")
    assert dict(Supplier.objects.values_list("name", "code")) == {
        "Farm-A": "farm-a",
        "Farm A": "farm-a-2",
        "Valley Growers": "valley-growers",
    }
    assert sorted(e["code"] for e in events("stock.supplier_changed")) == ["farm-a-2", "valley-growers"]
    assert operations.get("/api/v1/stock/suppliers/valley-growers/").json()["name"] == "Valley Growers"
    assert sorted(Batch.objects.values_list("supplier__code", flat=True)) == ["farm-a-2", "valley-growers"]


def test_supplier_codes_derived_from_names_are_keys_and_unique():
    taken: set[str] = set()
    codes = [supplier_code_from_name(name, taken) for name in ["Farm A", "farm a", "Ünïcödé GmbH", "日本", "x" * 200]]
    assert codes[:4] == ["farm-a", "farm-a-2", "unicode-gmbh", "supplier"]
    assert len(codes[4]) == 64
    assert all(is_identifier(code) for code in codes)


# ---- Receipts still refuse unknown skus --------------------------------------------------------------


def test_receipts_refuse_unknown_skus_until_the_ingredient_is_mastered(operations):
    first = services.ingest_receipt(
        key="a.csv", open_stream=csv_opener(f"sku,quantity,best_before\nbasil,5,{day(3)}\n"), source="upload"
    )
    assert first.receipt.rows_ingested == 0
    assert first.receipt.errors == [{"line": 2, "column": "sku", "reason": "unknown sku 'basil'"}]
    assert not Batch.objects.exists()
    operations.put("/api/v1/stock/ingredients/basil/", {"name": "Basil", "unit": "g"}, format="json")
    second = services.ingest_receipt(
        key="b.csv", open_stream=csv_opener(f"sku,quantity,best_before\nbasil,5,{day(3)}\n"), source="upload"
    )
    assert second.receipt.rows_ingested == 1
    assert Batch.objects.get().quantity_remaining == Decimal(5)


# ---- The OpenAPI examples work --------------------------------------------------------------------------


def test_every_master_data_request_example_in_the_schema_is_accepted(operations, settings, tmp_path):
    from supplychain.core.bootstrap import load_demo_data

    settings.OBJECT_STORAGE = {**settings.OBJECT_STORAGE, "BUCKET": "", "LOCAL_DIR": tmp_path}
    load_demo_data()
    schema = json.loads(operations.get("/api/schema/", {"format": "json"}).content)
    sent = 0
    for path, operations_of_path in schema["paths"].items():
        if not any(f"/stock/{kind}/" in path for kind in ("ingredients", "recipes", "suppliers")):
            continue
        for method, operation in operations_of_path.items():
            examples = (
                operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("examples", {})
            )
            for example in examples.values():
                url = path.replace("{version}", "v1")
                for parameter in ("sku", "code"):  # a PUT example names its key in the body too
                    url = url.replace("{" + parameter + "}", str(example["value"].get(parameter)))
                response = operations.generic(
                    method.upper(), url, json.dumps(example["value"]), content_type="application/json"
                )
                assert response.status_code in (200, 201), (method, url, response.content)
                sent += 1
    assert sent >= 6


# ---- Concurrency -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_upserts_of_the_same_new_key_both_succeed_and_create_it_once(monkeypatch):
    """Both read the sku as missing and insert it; the second insert fails on the unique index and is redone."""
    import threading

    from django.db import connections

    both_read = threading.Barrier(2, timeout=10)
    first_try = threading.local()
    original = Ingredient.objects.bulk_create

    def bulk_create_after_both_read(objects, *args, **kwargs):
        if objects and not getattr(first_try, "done", False):
            first_try.done = True
            both_read.wait()  # both transactions have looked and found nothing
        return original(objects, *args, **kwargs)

    monkeypatch.setattr(Ingredient.objects, "bulk_create", bulk_create_after_both_read)
    results, failures = [], []

    def upsert(name):
        try:
            results.append(services.upsert_ingredients(items=[services.IngredientData("ham", name, "g")])[0])
        except Exception as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=upsert, args=(name,)) for name in ("Ham", "Sliced ham")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert sorted(result.change for result in results) == ["created", "updated"]
    assert Ingredient.objects.filter(sku="ham").count() == 1
    assert [e["change"] for e in events("stock.ingredient_changed")] == ["created", "updated"]


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_suppliers_unique_codes_from_their_names():
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("stock", "0007_publish_through_events_function")], [("stock", "0008_master_data_supplier_code")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("stock", "Supplier")
    for name in ("Farm Fresh Ltd", "farm fresh ltd", "Ünïcödé GmbH", "***"):
        old.objects.create(name=name)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert dict(Supplier.objects.values_list("name", "code")) == {
        "Farm Fresh Ltd": "farm-fresh-ltd",
        "farm fresh ltd": "farm-fresh-ltd-2",
        "Ünïcödé GmbH": "unicode-gmbh",
        "***": "supplier",
    }
