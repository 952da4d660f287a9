"""One error body for every API failure: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.JSONField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = gettext_lazy("The upload is too large.")


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = gettext_lazy("The object is not in a state that allows this.")


def _first_code(detail) -> str | None:
    if isinstance(detail, dict):
        for value in detail.values():
            code = _first_code(value)
            if code:
                return code
    elif isinstance(detail, list):
        for value in detail:
            code = _first_code(value)
            if code:
                return code
    elif isinstance(detail, exceptions.ErrorDetail):
        return detail.code
    return None


def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def exception_handler(exc, context):
    # DRF turns Django's Http404 and PermissionDenied into its own; do it first so the codes
    # below are the same whichever one a selector raised.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled API error", exc_info=exc)
        return Response(
            error_body("server_error", _("Something went wrong on the server; it was logged.")),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        code = "invalid"
        message = _("The request is not valid; see details.")
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    else:
        detail = getattr(exc, "detail", "")
        code = _first_code(detail) or getattr(exc, "default_code", "error")
        message = str(detail) if not isinstance(detail, dict | list) else str(exc)
        details = detail if isinstance(detail, dict) else {}
    response.data = error_body(code, message, details)
    return response


# The error answers an operation's schema declares (docs/api.md).
ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input"),
    401: OpenApiResponse(ErrorSerializer, description="Not signed in"),
    403: OpenApiResponse(ErrorSerializer, description="Your role may not do this"),
    404: OpenApiResponse(ErrorSerializer, description="No such object"),
}
READ_ERRORS = {k: v for k, v in ERRORS.items() if k != 400}


def valid_input(serializer_class, request) -> dict:
    """The request body, validated; a 400 with the fields named otherwise."""
    form = serializer_class(data=request.data)
    form.is_valid(raise_exception=True)
    return form.validated_data


def invalid(details: dict) -> Response:
    """A 400 in the API's error shape, with `details` naming the fields at fault."""
    return Response(
        error_body("invalid", _("The request is not valid; see details."), details),
        status=status.HTTP_400_BAD_REQUEST,
    )
