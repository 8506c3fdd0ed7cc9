"""Health endpoints for load balancers and orchestrators: plain Django views, no authentication."""

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from supplychain.core import selectors


@never_cache
@require_GET
def healthz(request):
    """Liveness: the process answers. Touches nothing else, so it never flaps with a dependency."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    """Readiness: the database and the broker both answer; 503 naming the failing one otherwise."""
    checks = {"database": selectors.database_status(), "broker": selectors.broker_status()}
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ok" if ready else "fail", "checks": checks}, status=200 if ready else 503)
