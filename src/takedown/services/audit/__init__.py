"""The append-only, hash-chained audit log: events queued on a session and chained at
commit (``chain.py``: ``record``, ``record_many``, ``AuditChain``), and the log's
verification and checkpoints (``log.py``: ``AuditLog``, ``takedown audit …``).

May import: store, domain (``audit_chain``), ids. Every other service imports this one;
it imports no other service.
"""
