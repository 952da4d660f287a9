from django import forms
from django.utils.translation import gettext_lazy as _

from generation.models import LLMProfile, Stage


class RunStartForm(forms.Form):
    stage = forms.ChoiceField(label=_("What to run"), choices=Stage.choices, initial=Stage.ALL)
    profile = forms.ModelChoiceField(
        label=_("LLM endpoint"), queryset=LLMProfile.objects.order_by("-is_default", "name")
    )
    limit = forms.IntegerField(
        label=_("At most this many items"),
        required=False,
        min_value=1,
        help_text=_("Leave empty for every eligible item."),
    )


class PromptEditForm(forms.Form):
    system = forms.CharField(label=_("System message"), widget=forms.Textarea, required=False)
    template = forms.CharField(
        label=_("User message template"),
        widget=forms.Textarea,
        help_text=_(
            "Placeholders: $stem, $options, $answer, $answer_text, $cot, $guidance, $count."
        ),
    )
    note = forms.CharField(label=_("What changed"), max_length=300, required=False)
