"""GitLab's offset pagination: ``page`` and ``per_page`` (20 by default, at most 100), the
list in the body, and the rest in headers — X-Total, X-Total-Pages, X-Page, X-Per-Page,
X-Next-Page, X-Prev-Page and an RFC 8288 Link header (first, prev, next, last)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100


def _positive(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name, "")
    if value == "":
        return default
    if not value.isdigit() or int(value) < 1:
        raise serializers.ValidationError({name: "Must be a positive integer."})
    return int(value)


class GitLabPagination(BasePagination):
    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any]:
        self.request = request
        self.page = _positive(request, "page", 1)
        self.per_page = min(_positive(request, "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
        self.total = queryset.count()
        start = (self.page - 1) * self.per_page
        return list(queryset[start : start + self.per_page])

    def get_paginated_response(self, data: Any) -> Response:
        pages = max(1, -(-self.total // self.per_page))
        url = self.request.build_absolute_uri()
        url = replace_query_param(url, "per_page", self.per_page)
        nxt = self.page + 1 if self.page < pages else None
        prev = self.page - 1 if 1 < self.page <= pages + 1 else None
        links = {"first": 1, "prev": prev, "next": nxt, "last": pages}
        headers = {
            "X-Total": str(self.total),
            "X-Total-Pages": str(pages),
            "X-Page": str(self.page),
            "X-Per-Page": str(self.per_page),
            "X-Next-Page": str(nxt or ""),
            "X-Prev-Page": str(prev or ""),
            "Link": ", ".join(
                f'<{replace_query_param(url, "page", page)}>; rel="{rel}"'
                for rel, page in links.items()
                if page is not None
            ),
        }
        return Response(data, headers=headers)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return schema

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "page",
                "in": "query",
                "required": False,
                "description": "Page number (from 1).",
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": "per_page",
                "in": "query",
                "required": False,
                "description": f"Items per page (default {DEFAULT_PER_PAGE}, at most "
                f"{MAX_PER_PAGE}).",
                "schema": {"type": "integer", "minimum": 1},
            },
        ]
