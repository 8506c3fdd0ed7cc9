"""The Prometheus endpoint: a bearer token (METRICS_TOKEN) for scrapers, or a staff user."""

import hmac

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.http import require_GET
from rest_framework.exceptions import AuthenticationFailed

from supplychain.core.api.authentication import TokenAuthentication
from supplychain.core.api.errors import error_body
from supplychain.events import metrics


def _allowed(request) -> bool:
    header = request.headers.get("Authorization", "")
    if settings.METRICS_TOKEN and header.startswith("Bearer "):
        return hmac.compare_digest(header[7:].strip(), settings.METRICS_TOKEN)
    if request.user.is_authenticated and request.user.is_staff:
        return True
    try:
        found = TokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return False
    return bool(found and found[0].is_staff)


@require_GET
def metrics_view(request):
    if not _allowed(request):
        return JsonResponse(
            error_body(type="not_authenticated", status=401, detail="Send Authorization: Bearer <METRICS_TOKEN>."),
            status=401,
        )
    return metrics.render()
