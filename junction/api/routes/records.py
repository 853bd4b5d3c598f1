"""Routes: records (placeholder; filled in by its own change)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
