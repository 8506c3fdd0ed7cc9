#!/usr/bin/env bash
# make mutation: mutmut over the critical modules ([tool.mutmut] in pyproject.toml), then one summary line.
# Runs in a fresh mutants/ copy on the same PostgreSQL test database the tests use; one mutant at a time
# (every mutant's tests share that database). MUTATION_TIMEOUT bounds the whole run (seconds);
# MUTATION_CONTINUE=1 keeps mutants/ and goes on where an earlier run stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL="${TEST_DATABASE_URL:?}" CELERY_BROKER_URL="${TEST_REDIS_URL:?}" SUPPLYCHAIN_EXTRA_APPS=tests.probe
export DJANGO_SETTINGS_MODULE=supplychain.settings
[ -n "${MUTATION_CONTINUE:-}" ] || rm -rf mutants
status=0
timeout "${MUTATION_TIMEOUT:-3600}" .venv/bin/mutmut run --max-children 1 || status=$?
.venv/bin/mutmut export-cicd-stats >/dev/null
.venv/bin/mutmut results || true
.venv/bin/python - "$status" <<'PY'
import json
import sys

stats = json.load(open("mutants/mutmut-cicd-stats.json"))
others = {k: stats[k] for k in ("no_tests", "timeout", "suspicious", "skipped", "segfault") if stats[k]}
extra = "".join(f", {n} {k.replace('_', ' ')}" for k, n in others.items())
cut = " (cut short by MUTATION_TIMEOUT: run again to continue)" if sys.argv[1] == "124" else ""
print(f"mutants: {stats['killed']} killed, {stats['survived']} survived{extra} of {stats['total']}{cut}")
PY
