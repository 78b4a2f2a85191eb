"""Fault tests: real processes killed and restarted (`make chaos`)."""
