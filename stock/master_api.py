"""REST API of stock's master data: ingredients, recipes (bills of materials) and suppliers.

List, read, and idempotent upsert by natural key (``PUT .../{key}/``: 201 when created, 200 otherwise,
the same body for the same request) or up to ``MAX_BULK`` at once for ERP sync (``POST .../bulk/``).
Reads need ``stock.view_<model>``; writes need both ``stock.add_<model>`` and ``stock.change_<model>``
(an upsert may do either), held by the ``operations`` and ``erp`` roles (see ``supplychain.core.bootstrap``).
"""

from __future__ import annotations

from decimal import Decimal

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import filters, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from stock import selectors, services
from stock.models import (
    NATURAL_KEY_MAX_LENGTH,
    NATURAL_KEY_PATTERN,
    NATURAL_KEY_RULE,
    QUANTITY,
    Ingredient,
    Recipe,
    Supplier,
    natural_key_validator,
)
from supplychain.core.api.errors import STANDARD_ERRORS, error_body, error_response
from supplychain.core.api.parsers import JSONParser
from supplychain.core.api.permissions import require

RESERVED_KEYS = {"bulk"}  # ``.../bulk/`` is the bulk upsert, so no entity can be called that
NAME_MAX_LENGTH = Ingredient._meta.get_field("name").max_length
QUANTITY_MAX = Decimal(10 ** (QUANTITY["max_digits"] - QUANTITY["decimal_places"])) - Decimal("0.001")


def _not_reserved(value: str) -> None:
    if value.lower() in RESERVED_KEYS:
        raise serializers.ValidationError(f"{value!r} is reserved.")


class NaturalKeyField(serializers.CharField):
    """A sku, recipe code or supplier code: a slug in the one identifier alphabet (see ``stock.models``)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", NATURAL_KEY_MAX_LENGTH)
        kwargs.setdefault("help_text", f"{NATURAL_KEY_RULE}.")
        super().__init__(**kwargs)
        self.validators += [natural_key_validator, _not_reserved]


def _name(**kwargs) -> serializers.CharField:
    return serializers.CharField(max_length=NAME_MAX_LENGTH, **kwargs)


def _require_all(request, *permissions: str) -> None:
    for permission in permissions:
        require(request, permission)


def _key_matches(data, key_field: str, key: str) -> None:
    """A key in the body of a PUT must be the one in its URL (or left out)."""
    if isinstance(data, dict) and key_field in data and data[key_field] != key:
        raise serializers.ValidationError({key_field: [f"Must be the key in the URL ({key!r}) or left out."]})


def _bulk_answer(results: list[services.Upserted], key_field: str) -> dict:
    counts = {change.value: 0 for change in services.Change}
    for result in results:
        counts[result.change] += 1
    return {**counts, "results": [{key_field: r.key, "change": r.change.value} for r in results]}


class BulkAnswer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    results = serializers.ListField(child=serializers.DictField(), help_text="Per entity, in the order sent.")


def _upsert_responses(output) -> dict:
    return {
        200: OpenApiResponse(output, description="Already existed: changed as asked, or already so (nothing written)."),
        201: OpenApiResponse(output, description="Created."),
        **STANDARD_ERRORS,
        403: error_response(403, "The token's role may not master this data."),
    }


def _bulk_responses(conflict: str | None = None) -> dict:
    responses = {
        200: OpenApiResponse(BulkAnswer, description="All applied; what happened to each entity."),
        **STANDARD_ERRORS,
        403: error_response(403, "The token's role may not master this data."),
    }
    if conflict:
        responses[409] = error_response(409, conflict)
    return responses


class KeysFilter(django_filters.BaseInFilter, django_filters.CharFilter):
    """Comma-separated keys, each checked as a form CharField (no NUL bytes, at most the key length)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", NATURAL_KEY_MAX_LENGTH)
        super().__init__(**kwargs)


NOT_FOUND = error_response(404, "No such key.", error_body(type="not_found", status=404, detail="Not found."))


class MasterDataViewSet(viewsets.GenericViewSet):
    """List, read, upsert and bulk upsert of one kind of master data, keyed by its natural key."""

    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend, filters.SearchFilter]
    lookup_value_regex = NATURAL_KEY_PATTERN
    model: type
    input_class: type[serializers.Serializer]
    bulk_class: type[serializers.Serializer]

    def _permission(self, action: str) -> str:
        return f"stock.{action}_{self.model._meta.model_name}"

    def list(self, request, version="v1"):
        require(request, self._permission("view"))
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, version="v1", **kwargs):
        require(request, self._permission("view"))
        return Response(self.get_serializer(self._get(kwargs[self.lookup_field])).data)

    def update(self, request, version="v1", **kwargs):
        _require_all(request, self._permission("add"), self._permission("change"))
        key = kwargs[self.lookup_field]
        _key_matches(request.data, self.lookup_field, key)
        body = request.data
        data = self.input_class(data={**body, self.lookup_field: key} if isinstance(body, dict) else body)
        data.is_valid(raise_exception=True)
        change = self.upsert_one(data.validated_data)
        code = status.HTTP_201_CREATED if change == services.Change.CREATED else status.HTTP_200_OK
        return Response(self.get_serializer(self._get(key)).data, status=code)

    @action(detail=False, methods=["post"])
    def bulk(self, request, version="v1"):
        _require_all(request, self._permission("add"), self._permission("change"))
        data = self.bulk_class(data=request.data)
        data.is_valid(raise_exception=True)
        results = self.upsert_many(data.validated_data["items"])
        return Response(_bulk_answer(results, self.lookup_field))

    def _get(self, key: str):
        return get_object_or_404(self.get_queryset(), **{self.lookup_field: key})

    def upsert_one(self, values: dict) -> services.Change:
        raise NotImplementedError

    def upsert_many(self, items: list[dict]) -> list[services.Upserted]:
        raise NotImplementedError


def _bulk_of(item_class: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    return type(
        name,
        (serializers.Serializer,),
        {
            "items": item_class(many=True, allow_empty=False, max_length=services.MAX_BULK),
            "__doc__": f"Up to {services.MAX_BULK} entities, applied all or nothing.",
        },
    )


# ---- Ingredients ----------------------------------------------------------------------------------


class IngredientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Ingredient
        fields = ["sku", "name", "unit", "low_stock_threshold"]


class IngredientInput(serializers.Serializer):
    sku = NaturalKeyField()
    name = _name()
    unit = serializers.ChoiceField(choices=Ingredient.Unit.choices)
    low_stock_threshold = serializers.DecimalField(
        **QUANTITY,
        min_value=Decimal(0),
        max_value=QUANTITY_MAX,
        required=False,
        default=Decimal(0),
        help_text="Available below this is low stock (stock.low); 0 when left out.",
    )


IngredientBulkInput = _bulk_of(IngredientInput, "IngredientBulkInput")


class IngredientFilter(django_filters.FilterSet):
    sku = KeysFilter(field_name="sku", help_text="Comma-separated skus.")
    unit = django_filters.ChoiceFilter(choices=Ingredient.Unit.choices)

    class Meta:
        model = Ingredient
        fields = ["sku", "unit"]


INGREDIENT_EXAMPLE = {"name": "Sliced ham", "unit": "g", "low_stock_threshold": "500.000"}
INGREDIENT_ANSWER = {"sku": "ham", **INGREDIENT_EXAMPLE}
TAGS = ["stock master data"]


@extend_schema_view(
    list=extend_schema(tags=TAGS, summary="Ingredients by sku (search: sku and name)"),
    retrieve=extend_schema(tags=TAGS, summary="One ingredient", responses={200: IngredientSerializer, 404: NOT_FOUND}),
    update=extend_schema(
        tags=TAGS,
        summary="Create or change an ingredient (idempotent)",
        description=(
            "The sku is the URL's (it may be repeated in the body). The unit of an ingredient with batches "
            "cannot change (409)."
        ),
        request=IngredientInput,
        responses={
            **_upsert_responses(IngredientSerializer),
            409: error_response(409, "The unit of an ingredient with stock cannot change."),
        },
        examples=[
            OpenApiExample("ham", value=INGREDIENT_ANSWER, request_only=True),
            OpenApiExample("ham", value=INGREDIENT_ANSWER, response_only=True, status_codes=["200", "201"]),
        ],
    ),
    bulk=extend_schema(
        tags=TAGS,
        summary=f"Create or change up to {services.MAX_BULK} ingredients (ERP sync), all or nothing",
        request=IngredientBulkInput,
        responses=_bulk_responses("The unit of an ingredient with stock cannot change; nothing written."),
        examples=[
            OpenApiExample(
                "two",
                request_only=True,
                value={
                    "items": [
                        INGREDIENT_ANSWER,
                        {"sku": "basil", "name": "Fresh basil", "unit": "g", "low_stock_threshold": "50"},
                    ]
                },
            ),
            OpenApiExample(
                "answer",
                response_only=True,
                status_codes=["200"],
                value={
                    "created": 1,
                    "updated": 0,
                    "unchanged": 1,
                    "results": [{"sku": "ham", "change": "unchanged"}, {"sku": "basil", "change": "created"}],
                },
            ),
        ],
    ),
)
class IngredientViewSet(MasterDataViewSet):
    queryset = selectors.ingredients()
    serializer_class = IngredientSerializer
    filterset_class = IngredientFilter
    search_fields = ["sku", "name"]
    lookup_field = "sku"
    model = Ingredient
    input_class = IngredientInput
    bulk_class = IngredientBulkInput

    def upsert_one(self, values: dict) -> services.Change:
        return services.upsert_ingredient(**values)[1]

    def upsert_many(self, items: list[dict]) -> list[services.Upserted]:
        return services.upsert_ingredients(items=[services.IngredientData(**item) for item in items])


# ---- Recipes --------------------------------------------------------------------------------------


class RecipeLineSerializer(serializers.Serializer):
    sku = serializers.CharField(source="ingredient.sku")
    quantity_per_portion = serializers.DecimalField(**QUANTITY)
    unit = serializers.CharField(source="ingredient.unit", help_text="The ingredient's unit.")


class RecipeSerializer(serializers.ModelSerializer):
    lines = RecipeLineSerializer(many=True, help_text="The bill of materials: what one portion needs.")

    class Meta:
        model = Recipe
        fields = ["code", "name", "lines"]


class RecipeLineInput(serializers.Serializer):
    sku = NaturalKeyField()
    quantity_per_portion = serializers.DecimalField(**QUANTITY, min_value=Decimal("0.001"), max_value=QUANTITY_MAX)


class RecipeInput(serializers.Serializer):
    code = NaturalKeyField()
    name = _name()
    lines = RecipeLineInput(
        many=True,
        allow_empty=False,
        max_length=services.MAX_RECIPE_LINES,
        help_text="Every line of the bill of materials, each sku once; lines left out are removed.",
    )


RecipeBulkInput = _bulk_of(RecipeInput, "RecipeBulkInput")


class RecipeFilter(django_filters.FilterSet):
    code = KeysFilter(field_name="code", help_text="Comma-separated codes.")
    ingredient = django_filters.CharFilter(
        field_name="lines__ingredient__sku",
        distinct=True,
        max_length=NATURAL_KEY_MAX_LENGTH,
        help_text="Recipes that use this sku.",
    )

    class Meta:
        model = Recipe
        fields = ["code", "ingredient"]


RECIPE_EXAMPLE = {
    "name": "Ham and mushroom tagliatelle",
    "lines": [
        {"sku": "ham", "quantity_per_portion": "60"},
        {"sku": "mushroom", "quantity_per_portion": "80"},
        {"sku": "pasta", "quantity_per_portion": "125"},
        {"sku": "cream", "quantity_per_portion": "50"},
    ],
}
RECIPE_ANSWER = {
    "code": "ham-mushroom-pasta",
    "name": "Ham and mushroom tagliatelle",
    "lines": [
        {"sku": "cream", "quantity_per_portion": "50.000", "unit": "ml"},
        {"sku": "ham", "quantity_per_portion": "60.000", "unit": "g"},
        {"sku": "mushroom", "quantity_per_portion": "80.000", "unit": "g"},
        {"sku": "pasta", "quantity_per_portion": "125.000", "unit": "g"},
    ],
}


@extend_schema_view(
    list=extend_schema(tags=TAGS, summary="Recipes with their bills of materials (search: code and name)"),
    retrieve=extend_schema(tags=TAGS, summary="One recipe", responses={200: RecipeSerializer, 404: NOT_FOUND}),
    update=extend_schema(
        tags=TAGS,
        summary="Create or change a recipe and its whole bill of materials (idempotent)",
        description=(
            "The code is the URL's (it may be repeated in the body). Lines name existing ingredients; an unknown "
            "sku is a 400 naming it."
        ),
        request=RecipeInput,
        responses=_upsert_responses(RecipeSerializer),
        examples=[
            OpenApiExample(
                "ham-mushroom-pasta", value={"code": "ham-mushroom-pasta", **RECIPE_EXAMPLE}, request_only=True
            ),
            OpenApiExample("ham-mushroom-pasta", value=RECIPE_ANSWER, response_only=True, status_codes=["200", "201"]),
        ],
    ),
    bulk=extend_schema(
        tags=TAGS,
        summary=f"Create or change up to {services.MAX_BULK} recipes (ERP sync), all or nothing",
        request=RecipeBulkInput,
        responses=_bulk_responses(),
        examples=[
            OpenApiExample(
                "one", request_only=True, value={"items": [{"code": "ham-mushroom-pasta", **RECIPE_EXAMPLE}]}
            )
        ],
    ),
)
class RecipeViewSet(MasterDataViewSet):
    queryset = selectors.recipes()
    serializer_class = RecipeSerializer
    filterset_class = RecipeFilter
    search_fields = ["code", "name"]
    lookup_field = "code"
    model = Recipe
    input_class = RecipeInput
    bulk_class = RecipeBulkInput

    @staticmethod
    def _data(values: dict) -> services.RecipeData:
        lines = tuple(services.RecipeLine(line["sku"], line["quantity_per_portion"]) for line in values["lines"])
        return services.RecipeData(values["code"], values["name"], lines)

    def upsert_one(self, values: dict) -> services.Change:
        recipe = self._data(values)
        return services.upsert_recipe(code=recipe.code, name=recipe.name, lines=recipe.lines)[1]

    def upsert_many(self, items: list[dict]) -> list[services.Upserted]:
        return services.upsert_recipes(items=[self._data(item) for item in items])


# ---- Suppliers ------------------------------------------------------------------------------------


class SupplierSerializer(serializers.ModelSerializer):
    class Meta:
        model = Supplier
        fields = ["code", "name"]


class SupplierInput(serializers.Serializer):
    code = NaturalKeyField()
    name = _name(help_text="What receipts name the supplier by (their supplier column); unique.")


SupplierBulkInput = _bulk_of(SupplierInput, "SupplierBulkInput")


class SupplierFilter(django_filters.FilterSet):
    code = KeysFilter(field_name="code", help_text="Comma-separated codes.")

    class Meta:
        model = Supplier
        fields = ["code"]


@extend_schema_view(
    list=extend_schema(tags=TAGS, summary="Suppliers by code (search: code and name)"),
    retrieve=extend_schema(tags=TAGS, summary="One supplier", responses={200: SupplierSerializer, 404: NOT_FOUND}),
    update=extend_schema(
        tags=TAGS,
        summary="Create or rename a supplier (idempotent)",
        description=(
            "The code is the URL's (it may be repeated in the body). A supplier first named by a receipt got a "
            "code derived from its name."
        ),
        request=SupplierInput,
        responses={**_upsert_responses(SupplierSerializer), 409: error_response(409, "The name is another's.")},
        examples=[
            OpenApiExample(
                "valley-growers", value={"code": "valley-growers", "name": "Valley Growers"}, request_only=True
            ),
            OpenApiExample(
                "valley-growers",
                value={"code": "valley-growers", "name": "Valley Growers"},
                response_only=True,
                status_codes=["200", "201"],
            ),
        ],
    ),
    bulk=extend_schema(
        tags=TAGS,
        summary=f"Create or rename up to {services.MAX_BULK} suppliers (ERP sync), all or nothing",
        request=SupplierBulkInput,
        responses=_bulk_responses("A name is another supplier's; nothing written."),
        examples=[
            OpenApiExample(
                "two",
                request_only=True,
                value={
                    "items": [
                        {"code": "valley-growers", "name": "Valley Growers"},
                        {"code": "SUP-0042", "name": "Northern Dairies"},
                    ]
                },
            )
        ],
    ),
)
class SupplierViewSet(MasterDataViewSet):
    queryset = selectors.suppliers()
    serializer_class = SupplierSerializer
    filterset_class = SupplierFilter
    search_fields = ["code", "name"]
    lookup_field = "code"
    model = Supplier
    input_class = SupplierInput
    bulk_class = SupplierBulkInput

    def upsert_one(self, values: dict) -> services.Change:
        return services.upsert_supplier(**values)[1]

    def upsert_many(self, items: list[dict]) -> list[services.Upserted]:
        return services.upsert_suppliers(items=[services.SupplierData(**item) for item in items])
