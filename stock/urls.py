"""URL patterns of stock under /api/v1/stock/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from stock import api, master_api
from stock.stream import LevelStreamView

router = SimpleRouter()
router.register("levels", api.LevelViewSet, basename="stock-level")
router.register("batches", api.BatchViewSet, basename="stock-batch")
router.register("receipts", api.ReceiptViewSet, basename="stock-receipt")
router.register("reservations", api.ReservationViewSet, basename="stock-reservation")
router.register("ingredients", master_api.IngredientViewSet, basename="stock-ingredient")
router.register("recipes", master_api.RecipeViewSet, basename="stock-recipe")
router.register("suppliers", master_api.SupplierViewSet, basename="stock-supplier")
urlpatterns = [path("levels/stream", LevelStreamView.as_view(), name="stock-level-stream"), *router.urls]
