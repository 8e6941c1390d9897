"""Hash-list exchanges: add an exchange feeding a bank, pull its changes page by page
from the stored checkpoint (entries and checkpoint in one transaction per page), keep
each entry's provenance, disable what upstream removed (``service.py``:
``ExchangeService``); share the platform's own confirmed hashes out once the legal team
approves, through an outbox (``sharing.py``: ``ShareService``).

May import: ``services.banks`` (inserting entries), ``services.audit``, integrations
(the exchanges' clients), domain, store.
"""
