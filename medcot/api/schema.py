"""Schema post-processing: every operation documents the error answers any DRF view can give."""

from __future__ import annotations

ERROR_REF = {"$ref": "#/components/schemas/Error"}
COMMON = {
    "401": "Not signed in, or the token is not valid",
    "403": "Your role may not do this",
}
WITH_BODY = {
    "400": "Invalid input",
    "415": "The body's media type is not one this operation takes",
}


def add_error_responses(result, generator, request, public):
    """drf-spectacular POSTPROCESSING_HOOK: fill in error responses the views did not declare."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            extra = dict(COMMON)
            if "requestBody" in operation:
                extra.update(WITH_BODY)
            if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                extra["400"] = WITH_BODY["400"]
            for code, description in extra.items():
                operation["responses"].setdefault(
                    code,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": ERROR_REF}},
                    },
                )
    return result
