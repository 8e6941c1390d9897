"""The use cases, grouped by what each part serves. One use case is one transaction,
writing its audit events and outbox rows in the same transaction as the state change.

From the bottom up (a package may import those below it, never above; the import
contract in ``.importlinter`` holds this):

- ``audit``: the hash-chained audit log.
- ``identity``, ``outbound``, ``evidence``: API keys and users; webhooks and mail out;
  the evidence vault.
- ``index``: in-memory indexes that follow the database, and their snapshots.
- ``screening``, ``banks``: matching against banks; the banks themselves.
- ``cases``: reports, the copy graph, restriction, decisions, appeals, measures;
  ``exchanges``: hash lists pulled from NCMEC and StopNCII, feedback sent back.
- ``registry``, ``review``, ``legal``: the platform's content, the review console, legal
  reporting.

Background threads are started by ``takedown.runtime`` (``runtime/workers.py``), which
wires these services together once per process.
"""
