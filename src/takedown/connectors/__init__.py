"""Connectors: platforms integrated through Takedown's public HTTP API and webhooks only."""
