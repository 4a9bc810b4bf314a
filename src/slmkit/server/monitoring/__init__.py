"""Monitoring assets shipped with the package: Prometheus alert rules and a Grafana dashboard."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def asset(name: str) -> Path:
    """Path of a shipped asset: ``alerts.yml`` or ``grafana-dashboard.json``."""
    return Path(str(files(__package__).joinpath(name)))
