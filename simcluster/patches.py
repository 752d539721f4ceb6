"""The PATCH content types the API server accepts: JSON merge patch (RFC 7386), strategic
merge patch (for the Kubernetes fields handlers touch) and JSON patch (RFC 6902)."""

from __future__ import annotations

from typing import Any

from .errors import ApiError, bad_request
from .store import clone

JSON = dict[str, Any]

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"

# Lists merged element-wise by a key, as the Kubernetes types' patchMergeKey tags say.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
# Lists of scalars merged as sets.
SET_LISTS = {"finalizers"}


def apply_patch(target: JSON, patch: Any, content_type: str) -> JSON:
    media = content_type.split(";")[0].strip().lower()
    if media == MERGE:
        if not isinstance(patch, dict):
            raise bad_request("json: cannot unmarshal array into Go value of type map[string]")
        merged: JSON = merge_patch(clone(target), patch)
        return merged
    if media == STRATEGIC:
        if not isinstance(patch, dict):
            raise bad_request("json: cannot unmarshal array into Go value of type map[string]")
        strategic: JSON = strategic_merge(clone(target), patch)
        return strategic
    if media == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        patched: JSON = json_patch(clone(target), patch)
        return patched
    if media == APPLY:  # served by the dispatcher's `_apply`, never as a patch of a body
        raise ApiError(415, "server-side apply takes the applied configuration, not a patch",
                       reason="UnsupportedMediaType")
    raise ApiError(
        415,
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{JSON_PATCH}, {MERGE}, {STRATEGIC}, {APPLY}",
        reason="UnsupportedMediaType",
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- strategic merge ----------------------------------------------------------------------


def strategic_merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    patch = dict(patch)
    directive = patch.pop("$patch", None)
    if directive == "replace":
        return {k: v for k, v in clone(patch).items() if not k.startswith("$")}
    if directive == "delete":
        return None
    result = target if isinstance(target, dict) else {}
    retain = patch.pop("$retainKeys", None)
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in (value or [])]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            current = result.get(key)
            result[key] = _merge_list(key, current if isinstance(current, list) else [], value)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = clone(value)
    if isinstance(retain, list):
        for key in list(result):
            if key not in retain:
                del result[key]
    return result


def _list_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return MERGE_KEYS.get(field)


def _merge_list(field: str, current: list[Any], patch: list[Any]) -> list[Any]:
    if field in SET_LISTS:
        return list(current) + [v for v in patch if v not in current]
    merge_key = _list_key(field, current + patch)
    if merge_key is None:
        return [item for item in clone(patch) if not _is_directive(item)]
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [i for i in clone(patch) if not _is_directive(i)]
    result = list(current)
    for item in patch:
        if not isinstance(item, dict):
            continue
        index = next(
            (n for n, cur in enumerate(result)
             if isinstance(cur, dict) and cur.get(merge_key) == item.get(merge_key)),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(strategic_merge({}, item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def _is_directive(item: Any) -> bool:
    return isinstance(item, dict) and "$patch" in item


# -- JSON patch ---------------------------------------------------------------------------


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, message, reason="Invalid")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _unprocessable(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], op: str, path: str) -> Any:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise _unprocessable(f"jsonpatch {op} operation does not apply: doc is missing path: "
                                 f"{path}")
    return node


def _get(doc: Any, path: str, op: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent = _parent(doc, parts, op, path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise _unprocessable(f"jsonpatch {op} operation does not apply: doc is missing path: {path}")


def _remove(doc: Any, path: str, op: str) -> Any:
    parts = _pointer(path)
    parent = _parent(doc, parts, op, path)
    last = parts[-1] if parts else ""
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise _unprocessable(f"jsonpatch {op} operation does not apply: doc is missing key: {path}")


def _add(doc: Any, path: str, value: Any, op: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _parent(doc, parts, op, path)
    last = parts[-1]
    if isinstance(parent, dict):
        if op == "replace" and last not in parent:
            raise _unprocessable(f"jsonpatch replace operation does not apply: doc is missing "
                                 f"key: {path}")
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            if op == "replace":
                if int(last) == len(parent):
                    raise _unprocessable(f"jsonpatch replace operation does not apply: "
                                         f"index out of range: {path}")
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise _unprocessable(f"jsonpatch {op} operation does not apply: index out of range: "
                                 f"{path}")
    else:
        raise _unprocessable(f"jsonpatch {op} operation does not apply: doc is missing path: "
                             f"{path}")
    return doc


def json_patch(doc: Any, operations: list[Any]) -> Any:
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise bad_request("json patch operation lacks 'op' or 'path'")
        op, path = operation["op"], operation["path"]
        if op in ("add", "replace"):
            if "value" not in operation:
                raise bad_request(f"json patch {op} operation lacks 'value'")
            doc = _add(doc, path, clone(operation["value"]), op)
        elif op == "remove":
            _remove(doc, path, op)
        elif op == "test":
            if _get(doc, path, op) != operation.get("value"):
                raise _unprocessable(f"testing value {path} failed: test failed")
        elif op in ("move", "copy"):
            source = operation.get("from", "")
            value = _remove(doc, source, op) if op == "move" else clone(
                _get(doc, source, op))
            doc = _add(doc, path, value, "add")
        else:
            raise bad_request(f"Unexpected kind: {op}")
    return doc
