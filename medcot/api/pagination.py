from rest_framework.pagination import CursorPagination


class Cursor(CursorPagination):
    """Stable pages over growing tables: a cursor, not an offset, so new rows never shift them."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-id"


class CursorById(Cursor):
    ordering = "id"
