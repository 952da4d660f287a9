"""Login throttling: a small cache-based limit on failed sign-ins.

Failures are counted per username and per client address in the cache. Once either count
reaches MEDCOT_LOGIN_FAILURE_LIMIT within MEDCOT_LOGIN_FAILURE_WINDOW seconds, the login page
and the API token endpoint answer 429 until the window passes, without checking the password,
so guessing gets no feedback. A success clears the username's count.

The counts live in Django's cache; with several web processes, configure a shared cache
(MEDCOT_CACHE_URL, Redis) so they add up across processes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.utils.translation import gettext as _

THROTTLED_VIEWS = frozenset({"login", "api-token"})
ADDRESS_FACTOR = 4


def _keys(request: HttpRequest, username: str) -> list[str]:
    address = request.META.get("REMOTE_ADDR", "")
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [f"medcot:login-fail:user:{name}", f"medcot:login-fail:addr:{address}"]


def login_blocked(request: HttpRequest, username: str) -> bool:
    limit = settings.MEDCOT_LOGIN_FAILURE_LIMIT
    user_key, address_key = _keys(request, username)
    # A hospital's staff often share one address, so the address gets more room than a name.
    return (cache.get(user_key) or 0) >= limit or (
        cache.get(address_key) or 0
    ) >= limit * ADDRESS_FACTOR


def login_failure_record(request: HttpRequest, username: str) -> None:
    window = settings.MEDCOT_LOGIN_FAILURE_WINDOW
    for key in _keys(request, username):
        # add() is a no-op when the key exists, so the window starts at the first failure.
        cache.add(key, 0, timeout=window)
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, timeout=window)


def login_success_record(request: HttpRequest, username: str) -> None:
    cache.delete(_keys(request, username)[0])


def _view_name(request: HttpRequest) -> str | None:
    try:
        return resolve(request.path_info).url_name
    except Resolver404:
        return None


class LoginThrottleMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or _view_name(request) not in THROTTLED_VIEWS:
            return self.get_response(request)
        username = _username(request)
        if login_blocked(request, username):
            return _too_many(request)
        response = self.get_response(request)
        # The login form answers a failure by showing itself again (200) and a success with a
        # redirect; the token endpoint answers 400 or 200.
        failed = (
            response.status_code == 200
            if _view_name(request) == "login"
            else response.status_code == 400
        )
        if failed:
            login_failure_record(request, username)
        elif response.status_code in {200, 302}:
            login_success_record(request, username)
        return response


def _username(request: HttpRequest) -> str:
    content_type = request.META.get("CONTENT_TYPE", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return str(request.POST.get("username", ""))
    if content_type.startswith("application/json"):
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return ""
        return str(data.get("username", "")) if isinstance(data, dict) else ""
    return ""


def _too_many(request: HttpRequest) -> HttpResponse:
    minutes = max(1, settings.MEDCOT_LOGIN_FAILURE_WINDOW // 60)
    message = _("Too many failed sign-ins. Try again in %(minutes)d minutes.") % {
        "minutes": minutes
    }
    if request.path_info.startswith("/api/"):
        from django.http import JsonResponse

        response = JsonResponse(
            {"error": {"code": "throttled", "message": message, "details": {}}}, status=429
        )
    else:
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(settings.MEDCOT_LOGIN_FAILURE_WINDOW)
    return response
