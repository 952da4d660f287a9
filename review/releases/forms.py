from django import forms
from django.utils.translation import gettext_lazy as _

from medcot.i18n import specialty_label
from medcot.licenses import RELEASE_LICENSES
from medcot.models import QuestionType
from medcot.templatetags.medcot_format import language_label
from review.releases.models import VERSION_PATTERN

LICENSES = RELEASE_LICENSES


class ReleaseForm(forms.Form):
    version = forms.RegexField(
        label=_("Version"),
        regex=VERSION_PATTERN,
        max_length=40,
        help_text=_("Letters, digits, dots, dashes and underscores, e.g. v1.0."),
        error_messages={"invalid": _("Use letters, digits, dots, dashes and underscores.")},
    )
    license = forms.ChoiceField(
        label=_("Licence"),
        choices=LICENSES,
        initial="cc-by-nc-4.0",
        help_text=_("Defaults to the most restrictive licence of the sources."),
    )
    accept_license = forms.BooleanField(
        label=_("Release under this licence although a source's licence is more restrictive"),
        required=False,
    )
    specialties = forms.MultipleChoiceField(
        label=_("Specialties"),
        required=False,
        help_text=_("None selected: every specialty."),
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    languages = forms.MultipleChoiceField(label=_("Languages"), required=False)
    question_types = forms.MultipleChoiceField(label=_("Question types"), required=False)
    card_language = forms.ChoiceField(
        label=_("Language of the dataset card"),
        choices=[
            ("", _("The project's language")),
            ("en", _("English")),
            ("zh-hans", _("Chinese")),
        ],
        required=False,
        help_text=_(
            "Its headings and charts; Chinese projects default to Chinese, others to English."
        ),
    )
    notes = forms.CharField(
        label=_("Notes for the dataset card"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=5000,
    )

    def __init__(self, *args, choices: dict, **kwargs):
        super().__init__(*args, **kwargs)
        names = {
            "specialties": specialty_label,
            "languages": language_label,
            "question_types": lambda v: QuestionType(v).label if v in QuestionType.values else v,
        }
        for field in ("specialties", "languages", "question_types"):
            self.fields[field].choices = [
                (
                    value,
                    _("%(name)s (%(n)s)") % {"name": names[field](value) if value else "—", "n": n},
                )
                for value, n in choices[field]
            ]

    def filters(self) -> dict:
        return {k: self.cleaned_data[k] for k in ("specialties", "languages", "question_types")}
