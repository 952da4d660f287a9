"""Error pages (403, 404, 500) in the site's layout, with its navigation, whether DEBUG is on
(`make run`) or off; and one log line for an expected 403 instead of a traceback.

With DEBUG on, Django answers a 404 with its technical page (which lists every URL pattern)
and a view's exception with a traceback page. `ErrorPagesMiddleware` serves the site's pages
instead; the traceback of a 500 still goes to the log.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotFound
from django.shortcuts import render
from django.template import loader

logger = logging.getLogger("medcot.errors")


def _page(request: HttpRequest, status: int) -> HttpResponse:
    # An htmx request gets a fragment for the slot it targets, not a second page layout.
    template = "_error_fragment.html" if request.headers.get("HX-Request") else f"{status}.html"
    return render(request, template, {"status": status}, status=status)


def page_not_found(request: HttpRequest, exception=None) -> HttpResponse:
    return _page(request, 404)


def permission_denied(request: HttpRequest, exception=None) -> HttpResponse:
    return _page(request, 403)


def server_error(request: HttpRequest) -> HttpResponse:
    """The 500 page. The layout's context processors need the database, which may be what
    failed: then the page is rendered without them."""
    try:
        return _page(request, 500)
    except Exception:  # the error page itself must not fail
        return HttpResponse(loader.get_template("500.html").render({}), status=500)


def _forbidden_logged(request: HttpRequest) -> None:
    user = getattr(request, "user", None)
    who = user.get_username() if user is not None and user.is_authenticated else "anonymous"
    logger.warning("Forbidden: %s %s (user %s)", request.method, request.path, who)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


class ErrorPagesMiddleware:
    """Serve the site's error pages for browser requests (the API answers in JSON itself)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # An unknown URL never reaches a view; with DEBUG on, Django answers it with the
        # technical 404 page (an HttpResponseNotFound of HTML). Views answer with render().
        if (
            settings.DEBUG
            and type(response) is HttpResponseNotFound
            and response.get("Content-Type", "").startswith("text/html")
            and not _is_api(request)
        ):
            return page_not_found(request)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception):
        if _is_api(request):
            return None
        if isinstance(exception, Http404):
            return page_not_found(request, exception)
        if isinstance(exception, PermissionDenied):
            # Expected: a person followed a link their role does not open. One line, no trace.
            _forbidden_logged(request)
            response = permission_denied(request, exception)
            # Django would log the 403 again (its handler logs every 4xx it did not see logged).
            response._has_been_logged = True
            return response
        if settings.DEBUG:
            logger.exception("Server error: %s %s", request.method, request.path)
            return server_error(request)
        return None
