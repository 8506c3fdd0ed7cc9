"""What the stock API's serializers and routes share: quantities, database ids in URLs, strict text."""

from __future__ import annotations

from rest_framework import serializers

from stock.models import QUANTITY  # noqa: F401 (re-exported: the serializers' quantities, as stored)

ID_PATTERN = "[0-9]+"  # database ids in URLs


class StrictCharField(serializers.CharField):
    """Text that must arrive as a string: DRF's ``CharField`` would take the number 7 for ``"7"``."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
