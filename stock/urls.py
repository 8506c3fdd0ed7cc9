"""URL patterns of stock under /api/v1/stock/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from stock import api
from stock.stream import LevelStreamView

router = SimpleRouter()
router.register("levels", api.LevelViewSet, basename="stock-level")
router.register("batches", api.BatchViewSet, basename="stock-batch")
router.register("receipts", api.ReceiptViewSet, basename="stock-receipt")
router.register("reservations", api.ReservationViewSet, basename="stock-reservation")
urlpatterns = [path("levels/stream", LevelStreamView.as_view(), name="stock-level-stream"), *router.urls]
