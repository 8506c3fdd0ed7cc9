"""The demand forecast that drives purchasing: history, volume and recipe-mix models, ingredient demand,
stock projection with expiry, purchase suggestions, publishing. Pure parts (``series``, ``demand``) take and
return plain data; ``steps`` wraps them as the pipeline's Task steps (``@step("forecast.…")``)."""
