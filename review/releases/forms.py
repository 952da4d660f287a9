from django import forms
from django.utils.translation import gettext_lazy as _

from medcot.licenses import RELEASE_LICENSES
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
    notes = forms.CharField(
        label=_("Notes for the dataset card"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=5000,
    )

    def __init__(self, *args, choices: dict, **kwargs):
        super().__init__(*args, **kwargs)
        for field in ("specialties", "languages", "question_types"):
            self.fields[field].choices = [
                (value, f"{value or '—'} ({n})") for value, n in choices[field]
            ]

    def filters(self) -> dict:
        return {k: self.cleaned_data[k] for k in ("specialties", "languages", "question_types")}
