"""The OpenAPI document describes every DHT route's success body and scope."""

from __future__ import annotations

from typing import Any

from chorus_dht import DhtService
from chorus_dht.settings import DhtSettings

#: each /v1 operation: its success status, the schema of that body, and its scope
EXPECTED = {
    ("/v1/ucxl/{address}", "put"): ("200", "StoredValue", "admin"),
    ("/v1/ucxl/{address}", "get"): ("200", "SealedRecord", "read"),
    ("/v1/ucxl/{address}", "delete"): ("200", "Deleted", "admin"),
    ("/v1/ucxl", "get"): ("200", "Listing", "read"),
    ("/v1/nodes", "get"): ("200", "Nodes", "read"),
    ("/v1/routing", "get"): ("200", "Routing", "read"),
    ("/v1/local", "get"): ("200", "LocalRecords", "read"),
    ("/v1/audit", "get"): ("200", "AuditPage", "admin"),
    ("/v1/roles/{role}/keys", "get"): ("200", "RolePublicKey", "read"),
    ("/v1/roles/{role}/keys", "post"): ("201", "RolePublicKey", "admin"),
    ("/v1/decisions", "post"): ("201", "StoredValue", "admin"),
}


def test_every_route_names_its_success_body_and_scope(make_settings: Any) -> None:
    doc = DhtService(make_settings(DhtSettings)).app.openapi()
    found = {
        (path, method): operation
        for path, operations in doc["paths"].items()
        if path.startswith("/v1/")
        for method, operation in operations.items()
    }
    assert set(found) == set(EXPECTED)
    schemas = doc["components"]["schemas"]
    for key, (status, model, scope) in EXPECTED.items():
        operation = found[key]
        body = operation["responses"][status]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}, key
        assert operation["x-chorus-scope"] == scope, key
    record = schemas["SealedRecord"]["properties"]
    assert set(record) == {"address", "version", "roles", "stored_at", "expires_at", "sealed"}
    assert set(schemas["Nodes"]["properties"]) == {"self", "peers"}
