"""Fixtures of the in-process layer (see tests/inprocess.py)."""

from tests.inprocess import engines, home

__all__ = ["engines", "home"]
