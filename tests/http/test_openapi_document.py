"""The served OpenAPI document is valid OpenAPI, so standard client generators accept it."""

from __future__ import annotations

from typing import Any

import httpx
from openapi_spec_validator import validate


async def test_the_openapi_document_validates(client: httpx.AsyncClient) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    validate(document)  # raises, naming the first error, when it is not valid
    created = document["paths"]["/api/v1/jobs"]["post"]["responses"]["201"]
    assert created["headers"]["Location"]["schema"] == {"type": "string"}
