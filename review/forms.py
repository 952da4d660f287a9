"""Forms of the review pages. They parse and validate input; the services decide."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from medcot.models import OPTION_LABELS
from review.models import Adjudication, Decision, RubricDimension

BINARY = [(1, "1"), (0, "0")]
LETTERS = [(label, label) for label in OPTION_LABELS]


class FirstPassForm(forms.Form):
    relevance = forms.TypedChoiceField(label=_("Relevance"), choices=BINARY, coerce=int)
    correctness = forms.TypedChoiceField(label=_("Medical correctness"), choices=BINARY, coerce=int)
    sufficiency = forms.TypedChoiceField(
        label=_("Information sufficiency"), choices=BINARY, coerce=int
    )
    action = forms.ChoiceField(
        label=_("Then"),
        choices=[("pass", _("Pass")), ("fix", _("Fix")), ("discard", _("Discard"))],
        required=False,
    )
    reason = forms.CharField(label=_("Reason"), required=False, max_length=2000)
    comment = forms.CharField(label=_("Comment"), required=False, max_length=4000)
    stem = forms.CharField(label=_("Stem"), required=False)
    option_a = forms.CharField(label="A", required=False)
    option_b = forms.CharField(label="B", required=False)
    option_c = forms.CharField(label="C", required=False)
    option_d = forms.CharField(label="D", required=False)
    option_e = forms.CharField(label="E", required=False)
    answer = forms.ChoiceField(label=_("Key"), choices=LETTERS, required=False)
    cot = forms.CharField(label=_("Chain of thought"), required=False)
    seconds = forms.IntegerField(required=False, min_value=0)
    confirm_mismatch = forms.BooleanField(required=False)
    confirm_fast = forms.BooleanField(required=False)

    def clean(self):
        data = super().clean()
        if not self.errors:
            all_ones = data["relevance"] and data["correctness"] and data["sufficiency"]
            if not data.get("action"):
                data["action"] = "pass" if all_ones else ""
            if not data["action"]:
                raise forms.ValidationError(
                    _("A criterion is 0: choose fix (f) or discard (d), and give a reason.")
                )
        return data


class ConsensusVoteForm(forms.Form):
    answer = forms.ChoiceField(label=_("The correct answer is"), choices=LETTERS)
    approve_phrasing = forms.TypedChoiceField(
        label=_("Phrasing"),
        choices=[(1, _("Approve")), (0, _("Needs work"))],
        coerce=int,
    )
    comment = forms.CharField(label=_("Comment"), required=False, max_length=4000)
    confirm_mismatch = forms.BooleanField(required=False)


class RubricScoreForm(forms.Form):
    decision = forms.ChoiceField(
        label=_("Decision"),
        choices=Decision.choices,
        error_messages={"required": _("Decision: choose accept (y), revise (v) or discard (x).")},
    )
    answer = forms.ChoiceField(
        label=_("The correct answer is"),
        choices=LETTERS,
        error_messages={"required": _("Answer: choose the option you hold correct (a–e).")},
    )
    comment = forms.CharField(label=_("Comment"), required=False, max_length=4000)
    first_wrong_step = forms.IntegerField(
        label=_("First wrong step (optional)"), required=False, min_value=1, max_value=200
    )
    seconds = forms.IntegerField(required=False, min_value=0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for dimension in RubricDimension:
            self.fields[f"score_{dimension.value}"] = forms.TypedChoiceField(
                label=dimension.label,
                choices=[(0, "0"), (1, "1"), (2, "2")],
                coerce=int,
                error_messages={
                    "required": _("%(dimension)s: give a score of 0, 1 or 2.")
                    % {"dimension": dimension.label}
                },
            )

    def scores(self) -> dict[str, int]:
        return {d.value: self.cleaned_data[f"score_{d.value}"] for d in RubricDimension}


class PanelReviseForm(forms.Form):
    """The CoT and key, and optionally the stem and options (the panel page sends them all;
    the service checks the content against what the database accepts)."""

    stem = forms.CharField(label=_("Question"), required=False, strip=False)
    cot = forms.CharField(label=_("Chain of thought"))
    answer = forms.ChoiceField(label=_("Key"), choices=LETTERS)
    reason = forms.CharField(label=_("What changed and why"), max_length=2000)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for label in OPTION_LABELS:
            self.fields[f"option_{label.lower()}"] = forms.CharField(
                label=_("Option %(label)s") % {"label": label}, required=False, strip=False
            )

    def content(self) -> dict:
        """The stem and options to revise, or nothing when the form did not send them."""
        data = self.cleaned_data
        if "stem" not in self.data:
            return {}
        options = {label: data[f"option_{label.lower()}"] for label in OPTION_LABELS}
        # An empty fifth option means the question has four.
        if not options["E"].strip():
            del options["E"]
        return {"stem": data["stem"], "options": options}


class RegenerateForm(forms.Form):
    guidance = forms.CharField(label=_("Guidance for the model"), max_length=4000)


class AdjudicationForm(forms.Form):
    outcome = forms.ChoiceField(label=_("Decision"), choices=Adjudication.Outcome.choices)
    reason = forms.CharField(label=_("Reason"), max_length=4000)
    expert = forms.IntegerField(required=False)


class RubricGuideForm(forms.Form):
    introduction = forms.CharField(label=_("Introduction"), required=False)
    note = forms.CharField(label=_("What changed in this version"), max_length=300)

    def __init__(self, *args, guide=None, **kwargs):
        super().__init__(*args, **kwargs)
        levels = guide.levels if guide is not None else {}
        if guide is not None and not self.is_bound:
            self.initial["introduction"] = guide.introduction
        for dimension in RubricDimension:
            for level in ("0", "1", "2"):
                name = f"{dimension.value}_{level}"
                self.fields[name] = forms.CharField(
                    label=f"{dimension.label} — {level}", widget=forms.Textarea(attrs={"rows": 2})
                )
                if not self.is_bound:
                    self.initial[name] = levels.get(dimension.value, {}).get(level, "")

    def levels(self) -> dict[str, dict[str, str]]:
        return {
            d.value: {lv: self.cleaned_data[f"{d.value}_{lv}"] for lv in ("0", "1", "2")}
            for d in RubricDimension
        }


class PanelFilterForm(forms.Form):
    """Which waiting items the panels page lists (and "all matching" selects)."""

    specialty = forms.CharField(label=_("Specialty"), required=False, max_length=100)
    waited_days = forms.IntegerField(
        label=_("Waiting at least (days)"), required=False, min_value=0, max_value=3650
    )
    min_wrong = forms.IntegerField(
        label=_("Wrong re-answers at least"), required=False, min_value=0, max_value=20
    )

    def filters(self) -> dict:
        data = self.cleaned_data if self.is_valid() else {}
        return {
            "specialty": data.get("specialty") or None,
            "waited_days": data.get("waited_days"),
            "min_wrong": data.get("min_wrong"),
        }


class PanelBulkForm(PanelFilterForm):
    """A bulk action on the selected items, or on every item matching the filter."""

    action = forms.ChoiceField(
        choices=[
            ("auto", _("Assign automatically")),
            ("chosen", _("Assign the chosen experts")),
            ("specialty", _("Set the specialty")),
        ],
        error_messages={"required": _("Choose what to do with the selected items.")},
    )
    items = forms.TypedMultipleChoiceField(coerce=int, required=False, choices=())
    all_matching = forms.BooleanField(required=False)
    experts = forms.TypedMultipleChoiceField(coerce=int, required=False, choices=())
    new_specialty = forms.CharField(label=_("New specialty"), required=False, max_length=100)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Ids are checked against the database by the view; any integer parses here.
        self.fields["items"].valid_value = lambda value: True
        self.fields["experts"].valid_value = lambda value: True
