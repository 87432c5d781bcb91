"""Deliberately broken backends and stores, one per invariant, that the harness must catch."""

from __future__ import annotations
