"""OpenAPI post-processing: every operation documents the errors the shared mechanisms can answer.

Views declare the errors of their own rules (a 409 conflict, a 422 reuse) with ``error_response``;
the errors every endpoint can give by the way it is built are added here, once, so the schema never
lacks a status the server answers: 400 (a parameter or body refused), 401 and 403 (token and
permission), 404 (an unknown path parameter, a page past the last), 413 (a body over the limit).
"""

from __future__ import annotations

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


def document_errors(result, generator, request, public):
    """drf-spectacular POSTPROCESSING_HOOKS entry: add the standard errors an operation lacks."""
    for path, methods in result.get("paths", {}).items():
        for operation in methods.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for code in _wanted(path, operation):
                responses.setdefault(
                    code,
                    {"description": DESCRIPTIONS[code], "content": {"application/json": {"schema": ERROR_REF}}},
                )
    return result
