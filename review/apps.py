from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "review"
    verbose_name = "Review"

    def ready(self) -> None:
        """Tell the core what only this app knows: which items a reviewer or expert holds
        (queue leases, panel seats), where a person's interface language is kept, and the
        current rubric guide (the machine judge's prompt quotes it)."""
        from medcot.i18n import language_store_register
        from medcot.permissions import item_access_register
        from medcot.rubric import rubric_reader_register
        from review import selectors, services
        from review.services.rubric import rubric_text_current

        item_access_register(selectors.items_held_by)
        language_store_register(get=selectors.profile_language, set=services.profile_language_set)
        rubric_reader_register(rubric_text_current)
