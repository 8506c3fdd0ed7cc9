"""Data and invariants of stock: ingredients, recipes, batches, levels, the movement ledger, reservations.

Levels change only together with a ledger row, in one transaction (see ``stock/services.py``). Always:
ledger sum = on hand = remaining on active batches; reserved = open allocations; reserved <= on hand.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils.text import slugify

QUANTITY = {"max_digits": 14, "decimal_places": 3}
# Natural keys that name master data in URLs (sku, recipe code, supplier code): slugs (the columns are
# SlugFields) that are also identifiers of the one alphabet (supplychain.core.identifiers), so 1 to 64
# letters, digits, '-' and '_', starting with a letter or a digit.
NATURAL_KEY_MAX_LENGTH = 64
NATURAL_KEY_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
NATURAL_KEY_RULE = "1 to 64 characters of A-Z, a-z, 0-9, '_' and '-', starting with a letter or a digit"
natural_key_validator = RegexValidator(rf"\A{NATURAL_KEY_PATTERN}\Z", message=f"Not a valid key: {NATURAL_KEY_RULE}.")


class Ingredient(models.Model):
    class Unit(models.TextChoices):
        GRAM = "g", "gram"
        KILOGRAM = "kg", "kilogram"
        MILLILITRE = "ml", "millilitre"
        LITRE = "l", "litre"
        UNIT = "unit", "unit"

    sku = models.SlugField(max_length=NATURAL_KEY_MAX_LENGTH, unique=True, validators=[natural_key_validator])
    name = models.CharField(max_length=200)
    unit = models.CharField(max_length=8, choices=Unit.choices, default=Unit.UNIT)
    low_stock_threshold = models.DecimalField(**QUANTITY, default=Decimal(0))

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return self.sku


def supplier_code_from_name(name: str, taken: set[str]) -> str:
    """A supplier code derived from its name (``Farm Fresh Ltd`` -> ``farm-fresh-ltd``), unique among ``taken``.

    For suppliers that arrive by name only (a receipt's supplier column, rows from before codes existed);
    the code is added to ``taken``.
    """
    base = slugify(name)[:NATURAL_KEY_MAX_LENGTH].strip("-_") or "supplier"
    code, number = base, 1
    while code.lower() in taken:
        number += 1
        suffix = f"-{number}"
        code = base[: NATURAL_KEY_MAX_LENGTH - len(suffix)] + suffix
    taken.add(code.lower())
    return code


class Supplier(models.Model):
    """A supplier: named by receipts (``name``), addressed in URLs and by ERP sync by its ``code``."""

    code = models.SlugField(max_length=NATURAL_KEY_MAX_LENGTH, unique=True, validators=[natural_key_validator])
    name = models.CharField(max_length=200, unique=True)
    lead_time_days = models.PositiveSmallIntegerField(
        default=2,
        help_text="Days from placing a purchase order to delivery, unless an ingredient's terms say otherwise.",
    )

    class Meta:
        ordering = ["name"]
        # A supplier written without a code (a bulk insert that forgot it) fails loudly instead of
        # taking the empty code, which a second one would then conflict with silently.
        constraints = [models.CheckConstraint(condition=~Q(code=""), name="supplier_code_not_empty")]

    def __str__(self) -> str:
        return self.name


class SupplierIngredient(models.Model):
    """What a supplier sells of an ingredient and on which terms, so a purchase suggestion is orderable.

    Quantities are in the ingredient's unit: an order is a whole number of ``pack_size`` packs and at least
    ``minimum_order_quantity``; ``lead_time_days`` overrides the supplier's when set.
    """

    supplier = models.ForeignKey(Supplier, on_delete=models.CASCADE, related_name="terms")
    ingredient = models.ForeignKey(Ingredient, on_delete=models.CASCADE, related_name="supplier_terms")
    pack_size = models.DecimalField(**QUANTITY, default=Decimal(1))
    minimum_order_quantity = models.DecimalField(**QUANTITY, default=Decimal(0))
    lead_time_days = models.PositiveSmallIntegerField(null=True, blank=True)
    preferred = models.BooleanField(default=False, help_text="Chosen first when several suppliers sell it.")

    class Meta:
        ordering = ["ingredient", "supplier"]
        verbose_name = "supplier terms"
        verbose_name_plural = "supplier terms"
        constraints = [
            models.UniqueConstraint(fields=["supplier", "ingredient"], name="supplier_ingredient_once"),
            models.CheckConstraint(condition=Q(pack_size__gt=0), name="supplier_pack_size_positive"),
            models.CheckConstraint(condition=Q(minimum_order_quantity__gte=0), name="supplier_moq_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.supplier_id}: {self.ingredient_id}"

    @property
    def effective_lead_time_days(self) -> int:
        return self.lead_time_days if self.lead_time_days is not None else self.supplier.lead_time_days


class Recipe(models.Model):
    """A bill of materials: what one portion needs (used by orders and forecasting)."""

    code = models.SlugField(max_length=NATURAL_KEY_MAX_LENGTH, unique=True, validators=[natural_key_validator])
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class RecipeIngredient(models.Model):
    recipe = models.ForeignKey(Recipe, on_delete=models.CASCADE, related_name="lines")
    ingredient = models.ForeignKey(Ingredient, on_delete=models.PROTECT)
    quantity_per_portion = models.DecimalField(**QUANTITY)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["recipe", "ingredient"], name="recipe_ingredient_once"),
            models.CheckConstraint(condition=Q(quantity_per_portion__gt=0), name="recipe_quantity_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.recipe_id}: {self.quantity_per_portion} {self.ingredient_id}"


class Receipt(models.Model):
    """One CSV receipt file; identified by its key and content hash, so ingesting it twice changes nothing."""

    class Status(models.TextChoices):
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"

    key = models.CharField(max_length=500, unique=True)
    sha256 = models.CharField(max_length=64)
    source = models.CharField(max_length=20, help_text="upload, folder, s3")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PROCESSED)
    rows_total = models.PositiveIntegerField(default=0)
    rows_ingested = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="[{line, column, reason}] per bad row.")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return self.key

    @property
    def content_missing(self) -> bool:
        """Recorded for an object that was not in storage: nothing was read, so the key is not held."""
        return self.status == self.Status.FAILED and not self.sha256


class Batch(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DEPLETED = "depleted", "Depleted"
        EXPIRED = "expired", "Expired"

    # No index of its own: the unique (ingredient, lot) index serves lookups by ingredient (one index less per row).
    ingredient = models.ForeignKey(Ingredient, on_delete=models.PROTECT, related_name="batches", db_index=False)
    lot = models.CharField(max_length=100)
    supplier = models.ForeignKey(Supplier, null=True, blank=True, on_delete=models.PROTECT)
    receipt = models.ForeignKey(Receipt, null=True, blank=True, on_delete=models.PROTECT, related_name="batches")
    source_line = models.PositiveIntegerField(null=True, blank=True)
    received_at = models.DateTimeField()
    best_before = models.DateField()
    quantity_received = models.DecimalField(**QUANTITY)
    quantity_remaining = models.DecimalField(**QUANTITY)
    quantity_reserved = models.DecimalField(**QUANTITY, default=Decimal(0))
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)

    class Meta:
        ordering = ["best_before", "id"]
        verbose_name_plural = "batches"
        constraints = [
            models.UniqueConstraint(fields=["ingredient", "lot"], name="one_lot_per_ingredient"),
            models.CheckConstraint(condition=Q(quantity_remaining__gte=0), name="batch_remaining_not_negative"),
            models.CheckConstraint(condition=Q(quantity_reserved__gte=0), name="batch_reserved_not_negative"),
            models.CheckConstraint(
                condition=Q(quantity_reserved__lte=F("quantity_remaining")), name="batch_reserved_within_remaining"
            ),
        ]
        indexes = [
            models.Index(fields=["ingredient", "best_before"], condition=Q(status="active"), name="batch_fefo_idx"),
        ]

    def __str__(self) -> str:
        return f"lot {self.lot}, best before {self.best_before}"

    @property
    def quantity_available(self) -> Decimal:
        return self.quantity_remaining - self.quantity_reserved


class StockLevel(models.Model):
    ingredient = models.OneToOneField(Ingredient, on_delete=models.PROTECT, primary_key=True, related_name="level")
    on_hand = models.DecimalField(**QUANTITY, default=Decimal(0))
    reserved = models.DecimalField(**QUANTITY, default=Decimal(0))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["ingredient"]
        constraints = [
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="level_on_hand_not_negative"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="level_reserved_not_negative"),
            models.CheckConstraint(condition=Q(reserved__lte=F("on_hand")), name="level_reserved_within_on_hand"),
        ]

    def __str__(self) -> str:
        return f"{self.ingredient_id}: {self.on_hand} on hand, {self.reserved} reserved"

    @property
    def available(self) -> Decimal:
        return self.on_hand - self.reserved


class Reservation(models.Model):
    class Status(models.TextChoices):
        RESERVED = "reserved", "Reserved"
        COMMITTED = "committed", "Committed (picked)"
        RELEASED = "released", "Released"
        REJECTED = "rejected", "Rejected"

    transaction_id = models.CharField(max_length=100, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    request_hash = models.CharField(max_length=64)
    request = models.JSONField()
    response_status = models.PositiveSmallIntegerField()
    response = models.JSONField(help_text="The first answer, replayed to identical repeats.")
    needed_by = models.DateField(null=True, blank=True)
    hold_until = models.DateTimeField(null=True, blank=True)
    at_risk = models.BooleanField(default=False, help_text="Part of it could not be re-allocated after an expiry.")
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["hold_until"], condition=Q(status="reserved"), name="reservation_hold_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.transaction_id} ({self.status})"


# The allocation and ledger rows name their batch and ingredient without a database foreign key (stock 0013):
# each such check took a key-share lock on the hot batch and ingredient rows that every concurrent
# reservation also locks and updates, about 18 per reservation (measured: a sixth of a group call). Those
# rows are only written by the stock services, with ids read in the same transaction; batches and
# ingredients are never deleted while referenced (PROTECT, in Django); and the invariant audit
# (stock/invariants.py) reports any row whose batch or ingredient is missing, or whose batch is another
# ingredient's, which no foreign key checked.
UNCHECKED = {"db_constraint": False}


class Allocation(models.Model):
    """Part of a reservation taken from one batch (first-expiring first)."""

    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="allocations")
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="allocations", **UNCHECKED)
    # no index: nothing reads allocations by ingredient
    ingredient = models.ForeignKey(Ingredient, on_delete=models.PROTECT, db_index=False, **UNCHECKED)
    quantity = models.DecimalField(**QUANTITY)
    open = models.BooleanField(default=True, help_text="Still held (not yet committed, released or moved).")

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(quantity__gt=0), name="allocation_positive")]

    def __str__(self) -> str:
        """``10.000 ham from lot L7, best before 2026-12-04``: what an operator traces a reservation by."""
        return f"{self.quantity} {self.ingredient} from {self.batch}"


class Movement(models.Model):
    """The append-only ledger: every change of on hand or reserved, with why."""

    class Kind(models.TextChoices):
        RECEIPT = "receipt", "Receipt"
        RESERVE = "reserve", "Reserve"
        RELEASE = "release", "Release"
        CONSUME = "consume", "Consume"
        EXPIRE = "expire", "Expire"
        ADJUST = "adjust", "Adjust"

    # indexed by movement_ingredient_idx (ingredient, id), whose prefix it is
    ingredient = models.ForeignKey(
        Ingredient, on_delete=models.PROTECT, related_name="movements", db_index=False, **UNCHECKED
    )
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.PROTECT, **UNCHECKED)
    reservation = models.ForeignKey(Reservation, null=True, blank=True, on_delete=models.PROTECT)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    on_hand_delta = models.DecimalField(**QUANTITY)
    reserved_delta = models.DecimalField(**QUANTITY, default=Decimal(0))
    created_at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["ingredient", "id"], name="movement_ingredient_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.ingredient_id} {self.on_hand_delta:+}"
