"""Connectors: platforms integrated with Takedown from outside.

Each connector talks to Takedown only through its public HTTP API (an API key) and its
signed webhooks, exactly as a third party would; nothing here imports Takedown's
services, store or runtime (contract `connectors` in pyproject.toml). A connector could
be its own package; it lives here as the reference for integrating any platform.

- `mastodon`: an HTTP service between a Mastodon server and Takedown
  (docs/integrations/mastodon.md).
- `synapse`: a Synapse (Matrix homeserver) module, `takedown.connectors.synapse.
  TakedownModule` (docs/integrations/matrix.md). `synapse_takedown.py` holds the parts
  that need no Synapse: its settings, the webhook signature check, report categories and
  the two HTTP clients (Takedown's API, Synapse's admin API).
"""
