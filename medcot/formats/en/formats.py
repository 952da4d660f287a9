"""Django's English formats, unchanged (listed so both interface languages are explicit)."""

from django.conf.locale.en.formats import *  # noqa: F403
