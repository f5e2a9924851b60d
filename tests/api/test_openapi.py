"""The OpenAPI schema validates, describes every endpoint, and the docs page made from it works
under our Content-Security-Policy (no CDN, no inline script)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import drf_spectacular
import jsonschema
import pytest
from django.core.management import call_command

from tests.security.test_api_permission_matrix import API_ROUTES

pytestmark = pytest.mark.django_db
METASCHEMA = Path(drf_spectacular.__file__).parent / "validation" / "openapi_3_0_schema.json"


def test_served_schema_validates_against_the_openapi_3_0_metaschema(client) -> None:
    response = client.get("/api/v4/openapi")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    schema = response.json()
    assert schema["openapi"].startswith("3.0")
    jsonschema.validate(schema, json.loads(METASCHEMA.read_text()))
    schemes = schema["components"]["securitySchemes"]
    assert schemes["PrivateToken"] == {"type": "apiKey", "in": "header", "name": "PRIVATE-TOKEN"}
    assert schemes["BearerToken"] == {"type": "http", "scheme": "bearer"}


def test_schema_generation_has_no_warning(tmp_path) -> None:
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))


def test_schema_names_every_endpoint_and_method(client) -> None:
    paths = client.get("/api/v4/openapi").json()["paths"]
    documented = {(method.upper(), path) for path, item in paths.items() for method in item}
    for name, route in API_ROUTES.items():
        if route.name in ("api_schema", "api_docs"):
            continue
        wanted = re.sub(r"<\w+:(\w+)>", r"{\1}", _pattern(route.name))
        assert (route.method, wanted) in documented, name


def _pattern(name: str) -> str:
    from api.urls import urlpatterns

    [pattern] = [p for p in urlpatterns if p.name == name]
    return "/api/v4/" + str(pattern.pattern)


def test_docs_page_lists_every_operation_and_loads_nothing_from_elsewhere(client) -> None:
    response = client.get("/api/v4/docs")
    assert response.status_code == 200
    html = response.content.decode()
    paths = client.get("/api/v4/openapi").json()["paths"]
    for path, item in paths.items():
        for method in item:
            assert f"{method.upper()} {path}" in html
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert not re.search(r"<script(?![^>]*src=\"/static/)", html)  # only our own files
    assert "https://" not in html
