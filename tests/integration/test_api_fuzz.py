"""A bounded schemathesis run against the live schema of a real server (gunicorn on PostgreSQL).

Every operation but the live level stream gets its schema examples, the boundary cases schemathesis
derives from the schema and a fixed number of generated requests, valid and invalid, with a fixed
seed in deterministic mode, authenticated with a token holding every permission. No answer may be a
5xx, and every answer must be one the schema documents (status code, content type, body schema).
"""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.authtoken.models import Token

from stock import services
from stock.models import Batch
from supplychain.core.bootstrap import bootstrap
from tests.processes import free_port, running
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
EXAMPLES_PER_OPERATION = 25
SEED = 20261202
NOT_FUZZED = r"^/api/v1/stock/levels/stream$"  # a long-lived stream: tested in test_level_stream.py


UPDATE_BASELINE = ["--baseline-update"] if os.environ.get("SCHEMATHESIS_BASELINE_UPDATE") else []
BASELINE = Path(__file__).with_name("schemathesis-baseline.json")  # accepted findings, each with its reason


def _stock_and_an_operator_token() -> tuple[str, str]:
    """Stock to reserve, a reservation, batch and receipt the path parameters name, the admin's token and the
    schemathesis configuration that points the detail operations at them (else they only ever see 404s)."""
    bootstrap(demo=False)
    best_before = (timezone.localdate() + timedelta(days=30)).isoformat()
    for sku in ("ham", "mushroom"):
        IngredientFactory(sku=sku)
    text = f"sku,quantity,best_before,lot\nham,1000,{best_before},H1\nmushroom,1000,{best_before},M1\n"
    outcome = services.ingest_receipt(key="fuzz.csv", open_stream=csv_opener(text), source="upload")
    services.reserve_stock(transaction_id="fuzz-open", items=[services.Item("ham", 1)])
    batch = Batch.objects.filter(lot="H1").get()
    token, _ = Token.objects.get_or_create(user=get_user_model().objects.get(username="admin"))
    config = f"""
[[operations]]
include-path-regex = "^/api/v1/stock/reservations/[{{]transaction_id[}}]/"
parameters = {{ "path.transaction_id" = "fuzz-open" }}

[[operations]]
include-path = "/api/v1/stock/batches/{{id}}/"
parameters = {{ "path.id" = "{batch.pk}" }}

[[operations]]
include-path = "/api/v1/stock/receipts/{{id}}/"
parameters = {{ "path.id" = "{outcome.receipt.pk}" }}
"""
    return token.key, config


def test_schemathesis_finds_no_server_error_and_no_answer_the_schema_does_not_document(
    real_services, process_env, log_dir, tmp_path
):
    token, config = _stock_and_an_operator_token()
    config_file = tmp_path / "schemathesis.toml"
    config_file.write_text(config)
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "supplychain.wsgi:application", "-b", f"127.0.0.1:{port}"]
    argv += ["-w", "1", "--worker-class", "gthread", "--threads", "4"]
    env = {**process_env, "ALLOWED_HOSTS": "127.0.0.1", "DEBUG": "false"}

    def answers() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    with running("fuzz-web", argv, env, log_dir) as web:
        web.wait_until(answers, 60, "gunicorn to answer")
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(config_file),
            "run",
            f"http://127.0.0.1:{port}/api/schema/?format=json",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            str(SEED),
            "--generation-deterministic",
            # One worker: CPython 3.11.7's ast.parse is not thread-safe (hypothesis describes filter lambdas
            # with it; two threads raise "AST constructor recursion depth mismatch", gh-106905).
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--exclude-path-regex",
            NOT_FUZZED,
            "--header",
            f"Authorization: Token {token}",
            "--no-color",
            "--baseline",
            str(BASELINE),
            *UPDATE_BASELINE,
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ]
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, f"schemathesis found problems:\n{run.stdout[-20000:]}\n{run.stderr[-3000:]}"
