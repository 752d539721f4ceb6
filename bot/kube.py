"""The one boundary to the synchronous `kubernetes` client: calls run in worker threads and
its exceptions come back as our error tree."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from bot.lazy import lazy_module

# The client is imported on the first Kubernetes call, not at start (bot/lazy.py); modules
# that use its models import `client` from here.
if TYPE_CHECKING:
    from kubernetes import client, config
    from kubernetes.client import exceptions as kube_errors
    from kubernetes.config import config_exception
    from urllib3 import exceptions as urllib3_errors
else:
    client = lazy_module("kubernetes.client")
    config = lazy_module("kubernetes.config")
    kube_errors = lazy_module("kubernetes.client.exceptions")
    config_exception = lazy_module("kubernetes.config.config_exception")
    urllib3_errors = lazy_module("urllib3.exceptions")  # the client's transport

from bot.errors import ConfigError, NotFound, PermanentError, RetryableError
from bot.markup import code
from bot.metrics import KUBERNETES_API_ERRORS
from bot.names import is_dns1123_subdomain, shown

__all__ = ["KubeClients", "KubeFactory", "client", "kube_errors"]

T = TypeVar("T")


class KubeClients:
    """Typed API objects for one cluster context, with `call` to run them off the event loop.

    The connection is configured on first use, so runbooks that never touch Kubernetes run
    without a kubeconfig.
    """

    def __init__(self, connect: Callable[[], client.ApiClient]) -> None:
        self._connect = connect

    @cached_property
    def api_client(self) -> client.ApiClient:
        return self._connect()

    @cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @cached_property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client)

    @cached_property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    @cached_property
    def coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api_client)

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a client method in a worker thread; map API failures to our errors.

        The client's positional text arguments (and `name`, `namespace`) become URL path
        segments: each must be a Kubernetes name, whatever checked it before, so no value
        shapes a path (`/`, `..`, `%2F`, look-alike letters are refused before any request).
        """
        for value in (*args, kwargs.get("name"), kwargs.get("namespace")):
            if isinstance(value, str) and not is_dns1123_subdomain(value):
                raise PermanentError(
                    f"{code(shown(value))} is not a Kubernetes name; nothing was sent")
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except kube_errors.ApiException as exc:
            KUBERNETES_API_ERRORS.labels(reason=_reason(exc), status=str(exc.status or 0)).inc()
            raise _translate(exc) from exc
        except (urllib3_errors.HTTPError, OSError) as exc:
            KUBERNETES_API_ERRORS.labels(reason="Unreachable", status="0").inc()
            raise RetryableError(f"the Kubernetes API is unreachable: {exc}", delay=2.0) from exc

    def close(self) -> None:
        if "api_client" in self.__dict__:
            self.api_client.close()


class KubeFactory:
    """Builds and caches one client per kubeconfig context (None: current or in-cluster)."""

    def __init__(self, kubeconfig: str | None) -> None:
        self._kubeconfig = kubeconfig
        self._clients: dict[str | None, KubeClients] = {}

    def for_context(self, context: str | None) -> KubeClients:
        if context not in self._clients:
            self._clients[context] = KubeClients(lambda: self._api_client(context))
        return self._clients[context]

    def _api_client(self, context: str | None) -> client.ApiClient:
        try:
            if self._kubeconfig:
                return config.new_client_from_config(
                    config_file=self._kubeconfig, context=context, persist_config=False
                )
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        except (config_exception.ConfigException, OSError) as exc:
            raise ConfigError(
                f"cannot configure Kubernetes access (KUBECONFIG={self._kubeconfig}): {exc}"
            ) from exc

    def close(self) -> None:
        for clients in self._clients.values():
            clients.close()
        self._clients.clear()


def _reason(exc: kube_errors.ApiException) -> str:
    """The Status object's machine-readable reason (NotFound, Forbidden, ...), else the HTTP
    reason phrase without spaces (a proxy's answer), else Unknown."""
    try:
        body = json.loads(exc.body or "{}")
    except (ValueError, TypeError):
        body = {}
    reason = body.get("reason") if isinstance(body, dict) else None
    if isinstance(reason, str) and reason.isalnum():
        return reason[:40]
    phrase = "".join(str(exc.reason or "").title().split())
    return phrase[:40] if phrase.isalnum() else "Unknown"


def _translate(exc: kube_errors.ApiException) -> PermanentError | RetryableError:
    message = exc.reason or "error"
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message") or message
    except (ValueError, TypeError):
        pass
    status = exc.status or 0
    if status == 404:
        return NotFound(message)
    if status == 409:
        return RetryableError(f"conflict: {message}", delay=0.2)
    if status == 429 or status >= 500 or status == 0:
        return RetryableError(f"the Kubernetes API failed ({status}): {message}", delay=1.0)
    if status in (401, 403):
        return PermanentError(f"the Kubernetes API refused access ({status}): {message}")
    return PermanentError(f"the Kubernetes API rejected the request ({status}): {message}")
