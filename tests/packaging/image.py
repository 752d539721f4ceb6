"""What the Dockerfile declares about the running image: its volumes and its environment."""

from __future__ import annotations

import json
import re

from tests.packaging.tools import ROOT

__all__ = ["dockerfile_settings"]


def dockerfile_settings() -> tuple[set[str], dict[str, str]]:
    """The Dockerfile's VOLUME paths and the final stage's ENV settings."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final = text[text.rindex("\nFROM "):]
    volumes: set[str] = set()
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("VOLUME "):
            volumes |= set(json.loads(line.removeprefix("VOLUME ")))
        if line.startswith("ENV "):
            env |= dict(re.findall(r"(\w+)=(\S+)", line))
    return volumes, env
