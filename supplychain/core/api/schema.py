"""OpenAPI post-processing: every operation documents the errors the shared mechanisms can answer.

Views declare the errors of their own rules (a 409 conflict, a 422 reuse) with ``error_response``;
the errors every endpoint can give by the way it is built are added here, once, so the schema never
lacks a status the server answers: 400 (a parameter or body refused), 401 and 403 (token and
permission), 404 (an unknown path parameter, a page past the last), 413 (a body over the limit).
"""

from __future__ import annotations

from supplychain.core.api.errors import EXAMPLE_FIELD

ERROR_REF = {"$ref": "#/components/schemas/Error"}

DESCRIPTIONS = {
    "400": "The request is not valid: `errors` names each refused field, parameter or path.",
    "401": "No valid token.",
    "403": "The token's user lacks the permission this needs.",
    "404": "No such resource, or a page past the last.",
    "413": "The body is larger than the server accepts.",
}


def _wanted(path: str, operation: dict) -> list[str]:
    parameters = operation.get("parameters", [])
    codes = []
    if parameters or "requestBody" in operation:
        codes.append("400")
    if any(requirement for requirement in operation.get("security", [{}])):
        codes += ["401", "403"]
    if "{" in path or any(parameter["name"] == "page" for parameter in parameters):
        codes.append("404")
    if "requestBody" in operation:
        codes.append("413")
    return codes


def _first_field(operation: dict, schemas: dict) -> tuple[str, str]:
    """The operation's first body field (required ones first) and a message fitting it, else its first parameter."""
    for content in operation.get("requestBody", {}).get("content", {}).values():
        schema = content.get("schema", {})
        if "$ref" in schema:
            schema = schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
        if schema.get("required"):
            return schema["required"][0], "This field is required."
        if schema.get("properties"):
            return next(iter(schema["properties"])), "This value is not valid."
    for parameter in operation.get("parameters", []):
        return ("path" if parameter["in"] == "path" else parameter["name"]), "This value is not valid."
    return "non_field_errors", "This value is not valid."


def _name_the_example_field(operation: dict, schemas: dict) -> None:
    examples = operation["responses"].get("400", {}).get("content", {}).get("application/json", {}).get("examples")
    for example in (examples or {}).values():
        value = example.get("value", {})
        if EXAMPLE_FIELD in value.get("errors", {}):
            field, message = _first_field(operation, schemas)
            example["value"] = {**value, "detail": f"{field}: {message}", "errors": {field: [message]}}


def document_errors(result, generator, request, public):
    """drf-spectacular POSTPROCESSING_HOOKS entry: add the standard errors an operation lacks, and name
    the operation's own field in its 400 example."""
    schemas = result.get("components", {}).get("schemas", {})
    for path, methods in result.get("paths", {}).items():
        for operation in methods.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            _name_the_example_field(operation, schemas)
            responses = operation["responses"]
            for code in _wanted(path, operation):
                responses.setdefault(
                    code,
                    {"description": DESCRIPTIONS[code], "content": {"application/json": {"schema": ERROR_REF}}},
                )
    return result
