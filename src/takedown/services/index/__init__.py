"""In-memory indexes kept in step with the database: ``IndexFollower`` reads rows above
its cursor into a Hamming index (``follower.py``, and its ``Poller`` thread), and the
bank index's snapshots on disk (``snapshot.py``: write, load, generations, writer lock).

May import: matching, store, ``takedown.periodic``, ``takedown.memory``. Nothing here
knows what a bank or a case is.
"""
