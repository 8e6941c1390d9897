"""Hash banks and their entries: create and configure banks (per signal type settings),
add, import and export entries with provenance, disable false positives
(``service.py``: ``BankService``).

May import: ``services.audit``, signals, media (hashing media into entries), domain,
store.
"""
