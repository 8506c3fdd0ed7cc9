"""URL patterns of the backbone under /api/v1/."""

from rest_framework.routers import SimpleRouter

from supplychain.events import api

router = SimpleRouter()
router.register("events", api.EventViewSet, basename="event")
router.register("subscriptions", api.SubscriptionViewSet, basename="subscription")
router.register("deliveries", api.DeliveryViewSet, basename="delivery")
router.register("audit", api.AuditViewSet, basename="audit")
urlpatterns = router.urls
