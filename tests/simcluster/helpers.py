"""Helpers for the simcluster tests: explicit-content-type PATCH through the real client and
small object builders."""

from __future__ import annotations

from typing import Any

from kubernetes import client


def raw_patch(api: client.ApiClient, path: str, body: Any, content_type: str,
              response_type: str = "object") -> Any:
    """PATCH with an explicit Content-Type through the real client (typed patch methods
    choose json-patch for lists and strategic merge for dicts on their own)."""
    return api.call_api(
        path, "PATCH", header_params={"Content-Type": content_type,
                                      "Accept": "application/json"},
        body=body, response_type=response_type, auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


def deployment(name: str, image: str = "registry.example.com/demo/app:1.0.0",
               replicas: int = 2, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": image}]}},
                 **spec},
    }


def status_of(exc: client.ApiException) -> dict[str, Any]:
    """The Status object an API error carried."""
    import json

    body: dict[str, Any] = json.loads(exc.body)
    return body


def pod(name: str, *containers: str, image: str = "registry.example.com/demo/app:1.0.0",
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {"containers": [{"name": c, "image": image} for c in containers or ("app",)]},
    }
