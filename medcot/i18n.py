"""Choosing the interface language.

The browser's Accept-Language decides for someone who has not chosen (Django's LocaleMiddleware,
which also honours the language cookie the login page's switcher sets). A signed-in person's
choice is kept on their profile, so it follows them to any machine; this middleware applies it
after authentication. The session keeps a copy so a page costs no extra query.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop
from django.views.decorators.http import require_POST

SESSION_KEY = "medcot_language"


class _LanguageStore:
    """Where a signed-in person's choice is kept. The profile belongs to the review app, which
    registers its getter and setter from `AppConfig.ready` (the core imports no app); until
    then the choice lives in the session and the cookie only."""

    get: Callable[..., str] = staticmethod(lambda *, user: "")
    set: Callable[..., None] | None = None


_store = _LanguageStore()


def language_store_register(*, get: Callable[..., str], set: Callable[..., None]) -> None:
    _store.get = get
    _store.set = set


def supported(language: str) -> bool:
    return language in dict(settings.LANGUAGES)


def bcp47(language: str | None) -> str:
    """A Django language code as an HTML `lang` value: "zh-hans" → "zh-Hans", "zh" → "zh"."""
    if not language:
        return ""
    return translation.to_locale(language).replace("_", "-")


class ProfileLanguageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            language = request.session.get(SESSION_KEY)
            if language is None:
                language = _store.get(user=user) or ""
                request.session[SESSION_KEY] = language
            if language and supported(language):
                translation.activate(language)
                request.LANGUAGE_CODE = language
        return self.get_response(request)


@require_POST
def language_set(request: HttpRequest) -> HttpResponse:
    """The header's and the login page's switcher: remember the choice (on the profile when
    signed in, in a cookie always) and go back to the page it was made on."""
    language = request.POST.get("language", "")
    if not supported(language):
        return HttpResponseBadRequest(_("Unknown language."))
    if request.user.is_authenticated:
        if _store.set is not None:
            _store.set(user=request.user, language=language)
        request.session[SESSION_KEY] = language
    target = request.POST.get("next") or request.headers.get("referer") or "/"
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "/"
    response = redirect(target)
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )
    return response


# Specialty names as imports write them (CMMLU subjects from file names, MedQA/MedMCQA subjects,
# the usual clinical departments). They are data, but a shared vocabulary: shown in the
# interface's language when known, as written otherwise. Keys compare case-insensitively.
SPECIALTY_NAMES = {
    "anatomy": gettext_lazy("Anatomy"),
    "clinical knowledge": gettext_lazy("Clinical knowledge"),
    "professional medicine": gettext_lazy("Professional medicine"),
    "virology": gettext_lazy("Virology"),
    "college medicine": gettext_lazy("College medicine"),
    "medical genetics": gettext_lazy("Medical genetics"),
    "genetics": gettext_lazy("Genetics"),
    "college medical statistics": gettext_lazy("Medical statistics"),
    "nutrition": gettext_lazy("Nutrition"),
    "traditional chinese medicine": gettext_lazy("Traditional Chinese medicine"),
    "cardiology": gettext_lazy("Cardiology"),
    "neurology": gettext_lazy("Neurology"),
    "pediatrics": gettext_lazy("Pediatrics"),
    "paediatrics": gettext_lazy("Pediatrics"),
    "surgery": gettext_lazy("Surgery"),
    "medicine": gettext_lazy("Internal medicine"),
    "internal medicine": gettext_lazy("Internal medicine"),
    "obstetrics and gynecology": gettext_lazy("Obstetrics and gynecology"),
    "gynaecology & obstetrics": gettext_lazy("Obstetrics and gynecology"),
    "psychiatry": gettext_lazy("Psychiatry"),
    "pharmacology": gettext_lazy("Pharmacology"),
    "pathology": gettext_lazy("Pathology"),
    "physiology": gettext_lazy("Physiology"),
    "biochemistry": gettext_lazy("Biochemistry"),
    "microbiology": gettext_lazy("Microbiology"),
    "dermatology": gettext_lazy("Dermatology"),
    "ophthalmology": gettext_lazy("Ophthalmology"),
    "ent": gettext_lazy("Otorhinolaryngology"),
    "radiology": gettext_lazy("Radiology"),
    "anaesthesia": gettext_lazy("Anesthesiology"),
    "anesthesiology": gettext_lazy("Anesthesiology"),
    "orthopaedics": gettext_lazy("Orthopedics"),
    "orthopedics": gettext_lazy("Orthopedics"),
    "forensic medicine": gettext_lazy("Forensic medicine"),
    "social & preventive medicine": gettext_lazy("Preventive medicine"),
    "preventive medicine": gettext_lazy("Preventive medicine"),
    "dental": gettext_lazy("Stomatology"),
    "oncology": gettext_lazy("Oncology"),
    "infectious diseases": gettext_lazy("Infectious diseases"),
    "emergency medicine": gettext_lazy("Emergency medicine"),
    "endocrinology": gettext_lazy("Endocrinology"),
    "gastroenterology": gettext_lazy("Gastroenterology"),
    "nephrology": gettext_lazy("Nephrology"),
    "respiratory medicine": gettext_lazy("Respiratory medicine"),
    "hematology": gettext_lazy("Hematology"),
    "usmle": gettext_lazy("USMLE general"),
}


def specialty_label(value) -> str:
    """A specialty as the interface names it: "Virology" → "病毒学" in Chinese."""
    if not value:
        return ""
    known = SPECIALTY_NAMES.get(str(value).strip().lower())
    return str(known) if known is not None else str(value)


# Translators: the suffix Django puts after form labels ("Source:"). Chinese writes the
# full-width colon ("来源："); Django's own catalogue keeps the ASCII one.
LABEL_SUFFIX = gettext_noop(":")
