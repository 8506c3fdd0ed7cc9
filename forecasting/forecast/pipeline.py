"""The Order Simulation Forecast as an Amazon States Language definition, the seed's pipeline on the engine.

Plan → Map over history ranges (parallel batches) → merge → Choice by weekday (network configuration for
factory A on Fridays, factory B on Mondays) → Choice by the ``volume_model_v2`` flag → Parallel: volume and
recipe-mix models (with the flag on, the new model version too, and a comparison) → ingredient demand →
stock projection → purchase suggestions → publish. Every Task retries transient database errors.
"""

from __future__ import annotations

import copy

from forecasting.engine import definition as definitions

PIPELINE_NAME = "order-simulation-forecast"
TRANSIENT = {
    "ErrorEquals": ["OperationalError", "InterfaceError"],
    "IntervalSeconds": 2,
    "MaxAttempts": 3,
    "BackoffRate": 2.0,
    "JitterStrategy": "FULL",
}


def _task(resource: str, parameters: dict, result_path: str | None, next_state: str | None) -> dict:
    state = {"Type": "Task", "Resource": resource, "Parameters": parameters, "Retry": [TRANSIENT]}
    state["ResultPath"] = result_path
    if next_state:
        state["Next"] = next_state
    else:
        state["End"] = True
    return state


def _branch(name: str, resource: str, parameters: dict) -> dict:
    return {
        "StartAt": name,
        "States": {name: {"Type": "Task", "Resource": resource, "Parameters": parameters, "End": True}},
    }


VOLUME = {
    "history.$": "$.history",
    "as_of.$": "$.plan.as_of",
    "horizon_days.$": "$.plan.horizon_days",
    "interval.$": "$.plan.interval",
    "model.$": "$.plan.model",
}
CANDIDATE = {**VOLUME, "model": "holt_winters_v2"}
MIX = {"history.$": "$.history"}

DEFINITION = {
    "Comment": "Order Simulation Forecast: order history to purchase suggestions (issue 14).",
    "StartAt": "Plan",
    "States": {
        "Plan": {"Type": "Task", "Resource": "forecast.plan", "ResultPath": "$.plan", "Next": "LoadHistory"},
        "LoadHistory": {
            "Type": "Map",
            "ItemsPath": "$.plan.ranges",
            "MaxConcurrency": 4,
            "ItemProcessor": {
                "StartAt": "LoadBatch",
                "States": {
                    "LoadBatch": {
                        "Type": "Task",
                        "Resource": "forecast.load_history",
                        "Retry": [TRANSIENT],
                        "End": True,
                    }
                },
            },
            "ResultPath": "$.batches",
            "Next": "MergeHistory",
        },
        "MergeHistory": _task(
            "forecast.merge_history", {"batches.$": "$.batches", "as_of.$": "$.plan.as_of"}, "$.history", "ByWeekday"
        ),
        "ByWeekday": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.plan.weekday", "StringEquals": "Friday", "Next": "NetworkFactoryA"},
                {"Variable": "$.plan.weekday", "StringEquals": "Monday", "Next": "NetworkFactoryB"},
            ],
            "Default": "NetworkAllFactories",
        },
        "NetworkFactoryA": {
            "Type": "Pass",
            "Result": {"factories": ["A"]},
            "ResultPath": "$.network",
            "Next": "ByModelFlag",
        },
        "NetworkFactoryB": {
            "Type": "Pass",
            "Result": {"factories": ["B"]},
            "ResultPath": "$.network",
            "Next": "ByModelFlag",
        },
        "NetworkAllFactories": {
            "Type": "Pass",
            "Result": {"factories": ["A", "B"]},
            "ResultPath": "$.network",
            "Next": "ByModelFlag",
        },
        "ByModelFlag": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.plan.flags.volume_model_v2", "BooleanEquals": True, "Next": "ModelsAndCandidate"}
            ],
            "Default": "Models",
        },
        "Models": {
            "Type": "Parallel",
            "Branches": [
                _branch("Volume", "forecast.volume", VOLUME),
                _branch("RecipeMix", "forecast.recipe_mix", MIX),
            ],
            "ResultSelector": {"volume.$": "$[0]", "mix.$": "$[1]"},
            "ResultPath": "$.models",
            "Next": "IngredientDemand",
        },
        "ModelsAndCandidate": {
            "Type": "Parallel",
            "Branches": [
                _branch("Volume", "forecast.volume", VOLUME),
                _branch("VolumeCandidate", "forecast.volume", CANDIDATE),
                _branch("RecipeMix", "forecast.recipe_mix", MIX),
            ],
            "ResultSelector": {"volume.$": "$[0]", "candidate.$": "$[1]", "mix.$": "$[2]"},
            "ResultPath": "$.models",
            "Next": "CompareModels",
        },
        "CompareModels": _task(
            "forecast.compare_models",
            {"volume.$": "$.models.volume", "candidate.$": "$.models.candidate", "history.$": "$.history"},
            "$.models.comparison",
            "IngredientDemand",
        ),
        "IngredientDemand": _task(
            "forecast.ingredient_demand",
            {"volume.$": "$.models.volume", "mix.$": "$.models.mix"},
            "$.demand",
            "ProjectStock",
        ),
        "ProjectStock": _task(
            "forecast.project_stock", {"demand.$": "$.demand", "as_of.$": "$.plan.as_of"}, "$.projection", "Suggest"
        ),
        "Suggest": _task(
            "forecast.purchase_suggestions",
            {"projection.$": "$.projection", "as_of.$": "$.plan.as_of"},
            "$.purchasing",
            "Publish",
        ),
        "Publish": {
            "Type": "Task",
            "Resource": "forecast.publish",
            "Parameters": {
                "run_name.$": "$$.Execution.Name",
                "plan.$": "$.plan",
                "history.$": "$.history",
                "network.$": "$.network",
                "models.$": "$.models",
                "demand.$": "$.demand",
                "projection.$": "$.projection",
                "purchasing.$": "$.purchasing",
            },
            "Retry": [TRANSIENT],
            "End": True,
        },
    },
}


def definition() -> dict:
    """The validated definition (a fresh copy)."""
    return definitions.load(copy.deepcopy(DEFINITION))


def run_locally(payload: dict | None = None, *, name: str):
    """Run the pipeline in this process with the engine's local runner (no Celery): what
    ``manage.py run_forecast`` does until the Celery executor runs pipelines."""
    from forecasting.engine import LocalRunner
    from forecasting.forecast import steps  # noqa: F401 (registers the steps)

    return LocalRunner().run(definition(), payload or {}, name=name)


def install():
    """Save (or update) the definition as the pipeline ``order-simulation-forecast`` of the engine, so it
    runs on Celery (``POST /api/v1/pipelines/order-simulation-forecast/runs``, beat, the admin)."""
    from forecasting.services import save_pipeline

    return save_pipeline(
        name=PIPELINE_NAME, definition=definition(), description="Order history to purchase suggestions (issue 14)."
    )
