"""The HTTP face of tinyres: routes, request/response schemas and dependencies only."""
