"""Celery entry points of stock: receipt polling and ingest, expiry, hold release."""

import logging

from celery import shared_task
from django.conf import settings

from stock import services
from supplychain.core.errors import DomainError

logger = logging.getLogger(__name__)


@shared_task(name="stock.ingest_object", acks_late=True, ignore_result=True, time_limit=1800, soft_time_limit=1700)
def ingest_object(key: str) -> dict:
    """Ingest one receipt file from object storage; a duplicate changes nothing.

    A business rule's refusal (a key received with other content, a key no receipt can have) is final:
    logged as a warning and returned, not raised, since a retry would be refused the same way.
    """
    try:
        outcome = services.ingest_object(key=key)
    except DomainError as exc:
        logger.warning("Receipt %r refused: %s", key[:200], exc.detail)
        return {"key": key, "outcome": "refused", "reason": exc.detail}
    return {"key": key, "outcome": outcome.outcome, "ingested": outcome.receipt.rows_ingested}


@shared_task(name="stock.ingest_poll", ignore_result=True)
def ingest_poll() -> list[str]:
    """Find receipt files nobody ingested yet (S3 prefix or the local drop folder) and queue them."""
    keys = services.new_receipt_keys(prefix=settings.STOCK_RECEIPTS_PREFIX)
    for key in keys:
        ingest_object.delay(key)
    return keys


@shared_task(name="stock.expire_batches", acks_late=True, ignore_result=True)
def expire_batches() -> int:
    return services.expire_batches()


@shared_task(name="stock.release_expired_holds", acks_late=True, ignore_result=True)
def release_expired_holds() -> int:
    return services.release_expired_holds()
