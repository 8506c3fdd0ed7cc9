"""Top-level URLs: admin, health, metrics, the versioned API and its documentation."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from supplychain.core import health
from supplychain.events.views import metrics_view

api_v1 = [
    path("", include("supplychain.core.api.urls")),
    path("", include("supplychain.events.urls")),
    path("stock/", include("stock.urls")),
    path("", include("integrations.urls")),
    path("", include("forecasting.urls")),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    re_path(r"^api/(?P<version>v1)/", include((api_v1, "api"))),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

handler400 = "supplychain.core.api.errors.bad_request"
handler404 = "supplychain.core.api.errors.not_found"
handler500 = "supplychain.core.api.errors.server_error"
