"""Django's zh_Hans formats, with thousands grouped by commas as Chinese tables print them."""

from django.conf.locale.zh_Hans.formats import *  # noqa: F403

THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
