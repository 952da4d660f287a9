import factory
from django.contrib.auth import get_user_model

from medcot.lifecycle import Status
from medcot.models import AuthorKind, Item, ItemVersion, Language, Project


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password("correct horse battery staple")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")
    language = Language.EN
    # Tests submit at machine speed; the tests of the minimum time set it themselves.
    min_pass_seconds = 0
    # A drawn item waits for a second reviewer; the tests of double review set it themselves.
    double_review_percent = 0


class ItemFactory(factory.django.DjangoModelFactory):
    """An item with a first version. Pass `status=` to place it anywhere in the lifecycle."""

    class Meta:
        model = Item
        skip_postgeneration_save = True

    project = factory.SubFactory(ProjectFactory)
    external_id = factory.Sequence(lambda n: f"q-{n}")
    language = Language.EN
    specialty = "Cardiology"
    status = Status.IMPORTED

    @factory.post_generation
    def version(obj, create, extracted, **kwargs):
        if not create:
            return
        fields = {
            "stem": "A 54-year-old man has crushing chest pain for 40 minutes. Next step?",
            "option_a": "Aspirin and ECG",
            "option_b": "Discharge home",
            "option_c": "Abdominal ultrasound",
            "option_d": "Antacid trial",
            "option_e": "",
            "answer": "A",
            "cot": "",
        }
        fields.update(kwargs)
        version = ItemVersion.objects.create(
            item=obj, number=1, author_kind=AuthorKind.IMPORT, reason="factory", **fields
        )
        Item.objects.filter(pk=obj.pk).update(current_version=version, family=obj.pk)
        obj.current_version = version
        obj.family_id = obj.pk
