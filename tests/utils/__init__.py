"""Factories and helpers shared by the tests (plain functions, no fixtures)."""
