"""URL patterns of integrations under /api/v1/: orders, partner messages, inbound partner webhooks, purchase
orders and goods receipts from the ERP."""

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from integrations import api, erp_api, partner_api
from supplychain.core.identifiers import IDENTIFIER_PATTERN

router = SimpleRouter()
router.register("orders", api.OrderViewSet, basename="order")
router.register("partner-messages", partner_api.PartnerMessageViewSet, basename="partner-message")
router.register("purchase-orders", erp_api.PurchaseOrderViewSet, basename="purchase-order")
urlpatterns = [
    re_path(rf"^webhooks/(?P<partner>{IDENTIFIER_PATTERN})/$", partner_api.WebhookView.as_view(), name="webhook"),
    *router.urls,
    path("goods-receipts/", erp_api.GoodsReceiptView.as_view(), name="goods-receipt"),
]
