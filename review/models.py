from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Profile(models.Model):
    """What MedCoT knows of a person beyond their login: specialties, and a pseudonym used
    wherever their work is published (releases never carry names or emails)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="medcot_profile"
    )
    display_name = models.CharField(_("display name"), max_length=150, blank=True)
    specialties = models.JSONField(_("specialties"), default=list, blank=True)
    pseudonym = models.CharField(max_length=32, unique=True)

    def __str__(self) -> str:
        return self.display_name or self.user.get_username()
