"""REST API of stock: levels, batches (with traceability), receipts, reservations.

One module per resource (``levels``: levels and batches; ``receipts``; ``reservations``: single and bulk),
and ``fields`` for what their serializers share; re-exported here, so ``stock.api.X`` names stay.
"""

from stock.api.fields import ID_PATTERN, QUANTITY, StrictCharField
from stock.api.levels import BatchViewSet, LevelViewSet
from stock.api.receipts import ReceiptSerializer, ReceiptViewSet
from stock.api.reservations import BulkReservationInput, ReservationViewSet, plain_bulk_requests

__all__ = [
    "ID_PATTERN",
    "QUANTITY",
    "BatchViewSet",
    "BulkReservationInput",
    "LevelViewSet",
    "ReceiptSerializer",
    "ReceiptViewSet",
    "ReservationViewSet",
    "StrictCharField",
    "plain_bulk_requests",
]
