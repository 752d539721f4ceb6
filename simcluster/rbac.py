"""Who is asking, and may they: bearer tokens to subjects, and RBAC as the API server's
authorizer decides, from the Roles, ClusterRoles and their bindings stored in the simulation.

The admin token (the kubeconfig `write_kubeconfig` writes) is a cluster admin. A ServiceAccount's
token (`SimCluster.service_account_token`, or the TokenRequest subresource) authenticates as
`system:serviceaccount:<namespace>:<name>`, in the groups `system:serviceaccounts`,
`system:serviceaccounts:<namespace>` and `system:authenticated`, and may do what the rules bound
to it allow: verbs, API groups, `resource` or `resource/subresource`, resource names; a
RoleBinding grants its Role's or ClusterRole's rules in its namespace only, a ClusterRoleBinding
everywhere. Discovery and `/version` are open to every authenticated subject (as the
`system:discovery` and `system:basic-user` roles make them). A denied request gets 403 with the
API server's Status (`forbidden` in apiserver's `responsewriters/errors.go`).

Not modelled: aggregated ClusterRoles, escalation and bind checks, impersonation,
`nonResourceURLs` rules (non-resource paths are discovery and open), Node and webhook
authorizers.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from .errors import ApiError
from .resources import ResourceRegistry
from .store import Store

__all__ = ["ADMIN", "Attributes", "Authorizer", "Subject", "forbidden"]

JSON = dict[str, Any]


@dataclass(frozen=True)
class Subject:
    user: str
    groups: tuple[str, ...]
    admin: bool = False


ADMIN = Subject("admin", ("system:masters", "system:authenticated"), admin=True)


@dataclass(frozen=True)
class Attributes:
    """A resource request as the authorizer sees it."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""


class Authorizer:
    def __init__(self, store: Store, types: ResourceRegistry, admin_token: str) -> None:
        self._store = store
        self._types = types
        self._admin_token = admin_token
        self._tokens: dict[str, tuple[str, str]] = {}  # token -> (namespace, service account)
        self._lock = threading.Lock()
        # Every request refused (403), in order: a test proves a client needed nothing else.
        self.denied: list[tuple[Subject, Attributes]] = []

    # -- authentication -----------------------------------------------------------------

    def mint(self, namespace: str, service_account: str) -> str:
        """A new bearer token for the ServiceAccount (which need not exist yet)."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (namespace, service_account)
        return token

    def subject(self, header: str) -> Subject | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = value.strip()
        if hmac.compare_digest(token, self._admin_token):
            return ADMIN
        with self._lock:
            found = self._tokens.get(token)
        if found is None:
            return None
        namespace, name = found
        return Subject(f"system:serviceaccount:{namespace}:{name}",
                       ("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                        "system:authenticated"))

    # -- authorization ------------------------------------------------------------------

    def allowed(self, subject: Subject, attributes: Attributes) -> bool:
        if subject.admin:
            return True
        for binding, rules in self._bound_rules(attributes.namespace):
            if not any(_names(subject, s) for s in binding.get("subjects") or []):
                continue
            if any(_allows(rule, attributes) for rule in rules):
                return True
        return False

    def deny(self, subject: Subject, attributes: Attributes) -> ApiError:
        """Record the refusal; the 403 to answer with."""
        with self._lock:
            self.denied.append((subject, attributes))
        return forbidden(subject, attributes)

    def rules_for(self, subject: Subject, namespace: str) -> list[JSON]:
        """The resource rules that apply to `subject` in `namespace` (SelfSubjectRulesReview)."""
        if subject.admin:
            return [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
        out: list[JSON] = []
        for binding, rules in self._bound_rules(namespace):
            if any(_names(subject, s) for s in binding.get("subjects") or []):
                out.extend(rules)
        return out

    def _bound_rules(self, namespace: str) -> list[tuple[JSON, list[JSON]]]:
        found: list[tuple[JSON, list[JSON]]] = []
        for binding in self._objects("ClusterRoleBinding"):
            found.append((binding, self._role_rules(binding, "")))
        if namespace:
            for binding in self._objects("RoleBinding", namespace):
                found.append((binding, self._role_rules(binding, namespace)))
        return found

    def _role_rules(self, binding: JSON, namespace: str) -> list[JSON]:
        ref = binding.get("roleRef") or {}
        kind, name = ref.get("kind"), ref.get("name")
        if kind == "ClusterRole":
            role = self._object("ClusterRole", "", name)
        elif kind == "Role" and namespace:
            role = self._object("Role", namespace, name)
        else:
            role = None
        return list((role or {}).get("rules") or [])

    def _objects(self, kind: str, namespace: str = "") -> list[JSON]:
        rtype = self._types.by_kind("rbac.authorization.k8s.io", kind)
        return self._store.list(rtype, namespace) if rtype else []

    def _object(self, kind: str, namespace: str, name: Any) -> JSON | None:
        rtype = self._types.by_kind("rbac.authorization.k8s.io", kind)
        return self._store.get(rtype, namespace, str(name)) if rtype else None


def _names(subject: Subject, entry: JSON) -> bool:
    kind, name = entry.get("kind"), entry.get("name")
    if kind == "ServiceAccount":
        return subject.user == f"system:serviceaccount:{entry.get('namespace', '')}:{name}"
    if kind == "User":
        return subject.user == name
    if kind == "Group":
        return name in subject.groups
    return False


def _allows(rule: JSON, a: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    names = rule.get("resourceNames") or []
    if "*" not in verbs and a.verb not in verbs:
        return False
    if "*" not in groups and a.group not in groups:
        return False
    qualified = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    if not any(r in ("*", qualified) or (a.subresource and r == f"*/{a.subresource}")
               for r in resources):
        return False
    return not names or a.name in names


def forbidden(subject: Subject, a: Attributes) -> ApiError:
    """The API server's 403 for a denied request, word for word."""
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    qualified = f"{a.resource}.{a.group}" if a.group else a.resource
    what = f'{qualified} "{a.name}"' if a.name else qualified
    where = f' in the namespace "{a.namespace}"' if a.namespace else " at the cluster scope"
    message = (f'{what} is forbidden: User "{subject.user}" cannot {a.verb} resource '
               f'"{resource}" in API group "{a.group}"{where}')
    details: JSON = {"group": a.group, "kind": a.resource}
    if a.name:
        details["name"] = a.name
    return ApiError(403, message, reason="Forbidden", details=details)

