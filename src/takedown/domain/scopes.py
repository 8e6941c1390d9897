"""The names of the API-key scopes, in the order they are offered. What each one grants
is ``SCOPE_PERMISSIONS`` in :mod:`takedown.domain.access` (tests/test_cli.py checks that
both name the same scopes); the names alone live here so that
``takedown apikey create --help`` lists them without loading the domain's models."""

from __future__ import annotations

SCOPES = (
    "screen",
    "banks:read",
    "banks:write",
    "registry",
    "platform",
    "report:trusted_flagger",
    "report:law_enforcement",
    "admin",
    "metrics",
)
