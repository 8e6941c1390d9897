"""A new master key as text: 32 random bytes, URL-safe base64, one line. Kept apart from
``blobs.py`` (encryption, the database) so that ``takedown key new`` starts at once."""

from __future__ import annotations

import base64
import secrets


def new_key_text() -> str:
    """A fresh master key as the one line a key file or TAKEDOWN_MASTER_KEY holds."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
