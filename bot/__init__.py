"""opsbot: Slack and Alertmanager triggers turned into audited Kubernetes runbooks."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
