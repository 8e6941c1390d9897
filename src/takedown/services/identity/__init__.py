"""Who is calling: API keys for platforms and tools (``apikeys.py``), people who sign in
and their tokens (``users.py``).

May import: ``services.audit``, store, domain (``access``), errors, ids.
"""
