"""Suppliers get a ``code`` (their natural key in URLs and ERP sync), derived from the name for existing rows;
skus and recipe codes are checked against the one identifier alphabet too (no database change)."""

import django.core.validators
from django.db import migrations, models


def fill_codes(apps, schema_editor):
    from stock.models import supplier_code_from_name

    Supplier = apps.get_model("stock", "Supplier")
    taken: set[str] = set()
    suppliers = list(Supplier.objects.order_by("id"))
    for supplier in suppliers:
        supplier.code = supplier_code_from_name(supplier.name, taken)
    Supplier.objects.bulk_update(suppliers, ["code"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [("stock", "0007_publish_through_events_function")]

    operations = [
        migrations.AddField(model_name="supplier", name="code", field=models.CharField(max_length=64, null=True)),
        migrations.RunPython(fill_codes, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="supplier",
            name="code",
            field=models.SlugField(
                max_length=64,
                unique=True,
                validators=[
                    django.core.validators.RegexValidator(
                        "\\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\\Z",
                        message="Not a valid key: 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-', starting with a letter or a digit.",
                    )
                ],
            ),
        ),
        migrations.AddConstraint(
            model_name="supplier",
            constraint=models.CheckConstraint(
                condition=models.Q(("code", ""), _negated=True), name="supplier_code_not_empty"
            ),
        ),
        migrations.AlterField(
            model_name="ingredient",
            name="sku",
            field=models.SlugField(
                max_length=64,
                unique=True,
                validators=[
                    django.core.validators.RegexValidator(
                        "\\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\\Z",
                        message="Not a valid key: 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-', starting with a letter or a digit.",
                    )
                ],
            ),
        ),
        migrations.AlterField(
            model_name="recipe",
            name="code",
            field=models.SlugField(
                max_length=64,
                unique=True,
                validators=[
                    django.core.validators.RegexValidator(
                        "\\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\\Z",
                        message="Not a valid key: 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-', starting with a letter or a digit.",
                    )
                ],
            ),
        ),
    ]
