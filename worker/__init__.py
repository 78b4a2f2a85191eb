"""Celery workers: the app (celery_app), thin tasks (tasks), and the real work (sharding,
reading, training) as plain functions that tests call directly."""
