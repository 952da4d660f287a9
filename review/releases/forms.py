from django import forms
from django.utils.translation import gettext_lazy as _

from review.releases.models import VERSION_PATTERN

LICENSES = [
    ("cc-by-nc-4.0", "CC BY-NC 4.0"),
    ("cc-by-4.0", "CC BY 4.0"),
    ("cc-by-sa-4.0", "CC BY-SA 4.0"),
    ("cc-by-nc-sa-4.0", "CC BY-NC-SA 4.0"),
    ("apache-2.0", "Apache 2.0"),
    ("mit", "MIT"),
    ("other", _("Other (explain in the notes)")),
]


class ReleaseForm(forms.Form):
    version = forms.RegexField(
        label=_("Version"),
        regex=VERSION_PATTERN,
        max_length=40,
        help_text=_("Letters, digits, dots, dashes and underscores, e.g. v1.0."),
        error_messages={"invalid": _("Use letters, digits, dots, dashes and underscores.")},
    )
    license = forms.ChoiceField(label=_("Licence"), choices=LICENSES, initial="cc-by-nc-4.0")
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
