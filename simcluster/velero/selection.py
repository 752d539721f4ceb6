"""What a backup or restore covers: Velero's validation of the included/excluded lists and
label selectors of a spec, and the matching of namespaces, resources and labels against them."""

from __future__ import annotations

import fnmatch

from .. import selectors
from ..errors import ApiError
from ..resources import ResourceType
from .common import JSON, strings


def includes_excludes_errors(includes: list[str], excludes: list[str]) -> list[str]:
    """Velero's collections.ValidateIncludesExcludes."""
    errors = []
    if len(set(includes)) > 1 and "*" in includes:
        errors.append("includes list must either contain '*' only, or a non-empty list of items")
    if "*" in excludes:
        errors.append("excludes list cannot contain '*'")
    errors.extend(f"excludes list cannot contain an item in the includes list: {item}"
                  for item in sorted(set(excludes)) if item in includes)
    return errors


def spec_errors(spec: JSON, what: str) -> list[str]:
    errors = [f"Invalid included/excluded resource lists: {e}" for e in includes_excludes_errors(
        strings(spec.get("includedResources")), strings(spec.get("excludedResources")))]
    errors += [f"Invalid included/excluded namespace lists: {e}" for e in includes_excludes_errors(
        strings(spec.get("includedNamespaces")), strings(spec.get("excludedNamespaces")))]
    if spec.get("labelSelector") is not None and spec.get("orLabelSelectors") is not None:
        errors.append(f"encountered labelSelector as well as orLabelSelectors in {what} spec, "
                      "only one can be specified")
    for selector in [spec.get("labelSelector"), *(spec.get("orLabelSelectors") or [])]:
        try:
            selectors.from_object(selector if isinstance(selector, dict) else None)
        except ApiError as exc:
            errors.append(f"invalid label selector: {exc.message}")
    return errors


def namespace_filter(spec: JSON) -> tuple[list[str], list[str]]:
    """`includedNamespaces` (`*` alone meaning all) and `excludedNamespaces`."""
    includes = strings(spec.get("includedNamespaces"))
    includes = [] if includes == ["*"] else includes
    return includes, strings(spec.get("excludedNamespaces"))


def matches(name: str, includes: list[str], excludes: list[str]) -> bool:
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in excludes):
        return False
    return not includes or any(fnmatch.fnmatchcase(name, pattern) for pattern in includes)


def _resource_names(rtype: ResourceType) -> list[str]:
    """What includedResources may call a kind: plural, singular or short name, bare or
    qualified by its group (`deployments`, `deployments.apps`, `deploy`)."""
    bare = [rtype.plural, rtype.singular, *rtype.short_names]
    return bare + [f"{name}.{rtype.group}" for name in bare if rtype.group]


def resource_included(rtype: ResourceType, spec: JSON) -> bool:
    names = _resource_names(rtype)
    includes = strings(spec.get("includedResources"))
    excludes = strings(spec.get("excludedResources"))
    if any(fnmatch.fnmatchcase(n, p) for n in names for p in excludes):
        return False
    return not includes or any(fnmatch.fnmatchcase(n, p) for n in names for p in includes)


def labels_match(spec: JSON, obj: JSON) -> bool:
    labels = obj["metadata"].get("labels")
    ors = spec.get("orLabelSelectors")
    if ors:
        return any(selectors.matches_labels(selectors.from_object(s), labels) for s in ors)
    return selectors.matches_labels(selectors.from_object(spec.get("labelSelector")), labels)
