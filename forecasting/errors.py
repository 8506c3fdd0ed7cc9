"""Domain errors of forecasting (mapped once to the API's JSON error shape by supplychain.core.api.errors)."""

from supplychain.core.errors import Conflict, DomainError, NotFound


class PipelineNotFound(NotFound):
    type = "pipeline_not_found"
    title = "No such pipeline."


class RunNotFound(NotFound):
    type = "run_not_found"
    title = "No such pipeline run."


class DefinitionRejected(DomainError):
    """The definition is not a valid state machine; ``errors["definition"]`` lists each problem."""

    type = "invalid_definition"
    title = "The state machine definition is not valid."


class InvalidPipelineName(DomainError):
    type = "invalid_pipeline_name"
    title = "Not a valid pipeline name."


class RunNameTaken(Conflict):
    """A run of that name exists with another input (Step Functions' ExecutionAlreadyExists)."""

    type = "run_name_taken"
    title = "A run of this pipeline already has that name, with another input."


class RunNotRedrivable(Conflict):
    type = "run_not_redrivable"
    title = "This run cannot be redriven."


class RunNotRunning(Conflict):
    type = "run_not_running"
    title = "This run is not running."
