"""URL patterns of integrations under /api/v1/: orders."""

from rest_framework.routers import SimpleRouter

from integrations import api

router = SimpleRouter()
router.register("orders", api.OrderViewSet, basename="order")
urlpatterns = router.urls
