"""Forms of the quality pages. They parse input; the services decide."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from review.models import Stage

STAGES = [
    (Stage.FIRST_REVIEW.value, _("First-pass review")),
    (Stage.CONSENSUS.value, _("Consensus")),
]
VERDICTS = [("1", _("Correct: the item should pass")), ("0", _("Faulty: the item should fail"))]


class ControlFromItemForm(forms.Form):
    item = forms.IntegerField(label=_("Item id"), min_value=1)
    stage = forms.ChoiceField(label=_("Queue"), choices=STAGES)


class ControlFileForm(forms.Form):
    file = forms.FileField(label=_("Control file"))
    stage = forms.ChoiceField(label=_("Queue"), choices=STAGES)
    verdict = forms.ChoiceField(label=_("Every question in the file is"), choices=VERDICTS)
