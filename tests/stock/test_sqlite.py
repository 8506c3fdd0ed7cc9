"""Stock on the embedded default (SQLite in IMMEDIATE mode): concurrent reservations serialise, never oversell."""

import json
import os
import subprocess
import sys
import textwrap

from tests.processes import ROOT

SCRIPT = textwrap.dedent(
    """
    import json, subprocess, sys, threading
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], check=True)
    import django
    django.setup()
    from django.db import connection
    from stock import selectors, services
    from stock.models import Ingredient
    from tests.stock.factories import csv_opener

    for sku in ("ham", "cheese"):
        Ingredient.objects.create(sku=sku, name=sku)
    text = "sku,quantity,best_before,lot\\nham,20,2030-01-01,A\\nham,10,2030-02-01,B\\ncheese,30,2030-01-05,C\\n"
    services.ingest_receipt(key="x.csv", open_stream=csv_opener(text), source="upload")
    statuses, errors = [], []

    def client(n):
        try:
            items = [services.Item("ham", 4), services.Item("cheese", 4)]
            r = services.reserve_stock(transaction_id=f"t{n}", items=items)
            statuses.append(r.response_status)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(12)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps({"statuses": sorted(statuses), "errors": errors,
                      "violations": selectors.invariant_violations(), "vendor": connection.vendor}))
    """
)


def test_concurrent_reservations_on_sqlite_are_serialised_and_never_oversell(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(SUPPLYCHAIN_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="supplychain.settings", LOG_LEVEL="ERROR")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["vendor"] == "sqlite"
    assert found["errors"] == []
    assert found["statuses"].count(201) == 7  # 7 x 4 = 28 fits in 30; the 8th would oversell
    assert found["statuses"].count(409) == 5
    assert found["violations"] == []


GROUP_SCRIPT = textwrap.dedent(
    """
    import json, subprocess, sys
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], check=True)
    import django
    django.setup()
    from django.db import connection
    from stock import services
    from stock.models import Ingredient
    from tests.stock import group_race
    from tests.stock.factories import csv_opener

    lines = ["sku,quantity,best_before,lot"]
    for sku in group_race.HOT:
        Ingredient.objects.create(sku=sku, name=sku)
        lines += [f"{sku},40,2030-01-01,{sku}-a", f"{sku},40,2030-02-01,{sku}-b"]
    services.ingest_receipt(key="hot.csv", open_stream=csv_opener("\\n".join(lines)), source="upload")
    found = group_race.race(group_clients=4, single_clients=4, calls=2, group_size=25, single_calls=10)
    reserved = group_race.check(found, 80)
    print(json.dumps({"answers": len(found["answers"]), "reserved": reserved, "vendor": connection.vendor,
                      "rejected": sum(1 for _, status, _ in found["answers"] if status == "rejected")}))
    """
)


def test_group_and_single_reservations_on_sqlite_are_serialised_and_never_oversell(tmp_path):
    """The embedded default: group calls and single reservations from processes at once, checked as on PostgreSQL."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(SUPPLYCHAIN_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="supplychain.settings", LOG_LEVEL="ERROR")
    result = subprocess.run(
        [sys.executable, "-c", GROUP_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["vendor"] == "sqlite"
    assert found["answers"] == 4 * 2 * 25 + 4 * 10
    assert found["rejected"] > 0  # 240 asked of 10 skus x 80: some ran out
    assert max(found["reserved"].values()) == 80
