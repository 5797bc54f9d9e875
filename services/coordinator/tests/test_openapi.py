"""The OpenAPI document describes every success body and every scope of the coordinator's routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chorus_coordinator import CoordinatorService
from chorus_coordinator.settings import CoordinatorSettings

OPERATIONS = {
    ("post", "/v1/tasks"): ("201", "Task", "admin"),
    ("get", "/v1/tasks"): ("200", "TaskPage", "read"),
    ("get", "/v1/tasks/{task_id}"): ("200", "Task", "read"),
    ("get", "/v1/tasks/{task_id}/candidates"): ("200", "CandidateList", "read"),
    ("post", "/v1/tasks/{task_id}/claim"): ("200", "Task", "admin"),
    ("post", "/v1/tasks/{task_id}/progress"): ("200", "Task", "admin"),
    ("post", "/v1/tasks/{task_id}/complete"): ("200", "Task", "admin"),
    ("get", "/v1/agents"): ("200", "AgentList", "read"),
    ("get", "/v1/sessions"): ("200", "SessionList", "read"),
    ("get", "/v1/sessions/{session_id}"): ("200", "SessionDetail", "read"),
    ("get", "/v1/dependencies"): ("200", "DependencyList", "read"),
}


def test_every_route_documents_its_success_body_and_scope(
    make_settings: Callable[..., Any],
) -> None:
    service = CoordinatorService(make_settings(CoordinatorSettings, node_id="doc"))
    doc = service.app.openapi()
    found = {
        (method, path)
        for path, operations in doc["paths"].items()
        if path.startswith("/v1/")
        for method in operations
    }
    assert found == set(OPERATIONS)
    schemas = doc["components"]["schemas"]
    for (method, path), (status, model, scope) in OPERATIONS.items():
        operation = doc["paths"][path][method]
        body = operation["responses"][status]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}, (method, path)
        assert schemas[model]["properties"], model
        assert operation["x-chorus-scope"] == scope, (method, path)
    task = schemas["Task"]
    # progress appears once the holder reported some: not required, everything else is
    assert set(task["required"]) == set(task["properties"]) - {"progress"}
