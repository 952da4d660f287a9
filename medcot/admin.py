from django.contrib import admin

from medcot.models import Event, ImportBatch, Item, ItemVersion, Project


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is append-only: the admin site may look, never change or delete."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "language", "expansion_factor", "reanswer_attempts"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_by", "created_at"]

    # A project's events are protected history, so a project is never deleted; say so up front
    # instead of offering a delete that always ends on "protected objects".
    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Item)
class ItemAdmin(ReadOnlyAdmin):
    list_display = ["external_id", "project", "kind", "specialty", "language", "status"]
    list_filter = ["project", "status", "language", "kind"]
    search_fields = ["external_id"]
    list_select_related = ["project"]


@admin.register(ItemVersion)
class ItemVersionAdmin(ReadOnlyAdmin):
    list_display = ["item", "number", "author_kind", "author", "created_at"]
    raw_id_fields = ["item"]


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "item", "actor", "from_status", "to_status"]
    list_filter = ["kind"]
    raw_id_fields = ["item"]


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyAdmin):
    list_display = ["file_name", "project", "state", "created_count", "error_count", "created_at"]
    exclude = ["content"]
