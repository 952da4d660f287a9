from django import forms
from django.utils.translation import gettext_lazy as _

from generation.models import LLMProfile, Stage


class RunStartForm(forms.Form):
    stage = forms.ChoiceField(label=_("What to run"), choices=Stage.choices, initial=Stage.ALL)
    profile = forms.ModelChoiceField(
        label=_("LLM endpoint"),
        queryset=LLMProfile.objects.filter(enabled=True).order_by("-is_default", "name"),
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


class ProfileForm(forms.ModelForm):
    """An LLM endpoint. The key is never entered here: only the name of the environment
    variable that holds it."""

    alternate_models = forms.CharField(
        label=_("Alternate models for re-answering"),
        required=False,
        help_text=_("Comma-separated; later re-answer attempts rotate through them."),
    )

    class Meta:
        model = LLMProfile
        fields = list(LLMProfile.EDITABLE_FIELDS)
        widgets = {"base_url": forms.TextInput(attrs={"placeholder": "https://api.example.com/v1"})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["alternate_models"] = ", ".join(self.instance.alternate_models or [])
        self.fields["api_key_env"].widget.attrs["placeholder"] = "DEEPSEEK_API_KEY"
        self.fields["api_key_env"].label = _("Environment variable holding the API key")

    def clean_alternate_models(self) -> list[str]:
        value = self.cleaned_data.get("alternate_models") or ""
        return [part.strip() for part in value.split(",") if part.strip()]

    def clean_api_key_env(self) -> str:
        from generation.services import GenerationError, check_api_key_env

        try:
            return check_api_key_env(self.cleaned_data.get("api_key_env", ""))
        except GenerationError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_enabled(self) -> bool:
        enabled = self.cleaned_data.get("enabled")
        if not enabled and self.instance.pk and self.instance.is_default:
            raise forms.ValidationError(_("The default endpoint cannot be disabled."))
        return enabled

    def profile_fields(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.Meta.fields}
