"""The three repositories in one place; each lives in its own module."""

from __future__ import annotations

from entities.containers import ContainerRepository
from entities.images import ImageRepository
from entities.sessions import SessionRepository

__all__ = ["ContainerRepository", "ImageRepository", "SessionRepository"]
