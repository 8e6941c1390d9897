"""Hash banks and their entries: create and configure banks (per signal type settings),
add, import and export entries with provenance, disable false positives
(``service.py``: ``BankService``); flood quarantine and each entry's match history
(``quarantine.py``); the exchanges a bank shares its confirmed hashes to, and the
shares a decision proposes (``sharing.py``).

May import: ``services.audit``, signals, media (hashing media into entries), domain,
store.
"""
