"""The OpenAPI schema (/api/v4/openapi) and a docs page rendered from it on the server.

drf-spectacular's Swagger UI and Redoc views load their JavaScript from a CDN (or from
drf-spectacular-sidecar, not installed) and start it with an inline script: our CSP allows
neither. The page here is plain HTML, readable without JavaScript."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

METHODS = ("get", "post", "put", "patch", "delete")


class SchemaView(SpectacularAPIView):
    """JSON by default (``?format=yaml`` for YAML); public, like GitLab's."""

    renderer_classes = [OpenApiJsonRenderer, OpenApiYamlRenderer]
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []


@lru_cache(maxsize=1)
def api_schema() -> dict[str, Any]:
    """The schema as served (it depends only on the code)."""
    return SchemaGenerator().get_schema(request=None, public=True)  # type: ignore[no-any-return]


def _type(schema: dict[str, Any], components: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "allOf" in schema:
        return " & ".join(_type(part, components) for part in schema["allOf"])
    if "oneOf" in schema:
        return " | ".join(_type(part, components) for part in schema["oneOf"])
    kind = schema.get("type", "object")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}), components)}"
    if "enum" in schema:
        return " | ".join(str(value) for value in schema["enum"] if value is not None)
    if schema.get("format"):
        kind = f"{kind} ({schema['format']})"
    return f"{kind}, or null" if schema.get("nullable") else kind


def _fields(schema: dict[str, Any], components: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """A body's name and its fields (one level: nested objects are named, and listed below)."""
    name = _type(schema, components)
    if "$ref" in schema:
        schema = components.get(name, {})
    elif schema.get("type") == "array" and "$ref" in schema.get("items", {}):
        schema = components.get(_type(schema["items"], components), {})
    required = set(schema.get("required", []))
    fields = [
        {
            "name": field,
            "type": _type(spec, components),
            "required": "yes" if field in required else "",
            "description": spec.get("description", ""),
        }
        for field, spec in schema.get("properties", {}).items()
    ]
    return name, fields


def operations() -> list[dict[str, Any]]:
    schema = api_schema()
    components = schema.get("components", {}).get("schemas", {})
    found = []
    for path, item in schema["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            request_name, request_fields = _fields(body["schema"], components) if body else ("", [])
            responses = []
            for code, answer in operation.get("responses", {}).items():
                content = answer.get("content", {}).get("application/json")
                name = _type(content["schema"], components) if content else "no content"
                model = name.removeprefix("array of ")
                responses.append(
                    {"status": code, "body": name, "model": model if model in components else ""}
                )
            found.append(
                {
                    "id": operation.get("operationId", f"{method}-{path}"),
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "type": _type(p.get("schema", {}), components),
                            "required": "yes" if p.get("required") else "",
                            "description": p.get("description", ""),
                        }
                        for p in operation.get("parameters", [])
                    ],
                    "request": request_name,
                    "request_fields": request_fields,
                    "responses": responses,
                }
            )
    return found


def models() -> list[dict[str, Any]]:
    components = api_schema().get("components", {}).get("schemas", {})
    return [
        {"name": name, "fields": _fields({"$ref": f"#/{name}"}, components)[1]}
        for name in sorted(components)
        if components[name].get("properties")
    ]


@require_GET
def api_docs(request: HttpRequest) -> HttpResponse:
    context = {"operations": operations(), "models": models(), "schema": api_schema()}
    return render(request, "api/docs.html", context)
