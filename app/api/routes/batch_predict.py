"""Placeholder: filled in by the work on issue 11."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
