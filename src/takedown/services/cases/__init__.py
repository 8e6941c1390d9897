"""Cases: the life of a report or match about a piece of material. Intake and
restriction (restrict first over the copy graph), decisions and appeals (four eyes),
the reporter's public status, and reads for the API (``service.py``: ``CaseService``,
composed from those parts); the copy graph (``copies.py``), hash-only reports
(``reported_hashes.py``), account and reporter measures and re-upload banking
(``enforcement.py``), and which media belong to a case (``media.py``).

May import: ``services.screening`` (matching reported hashes against banks),
``services.banks`` (banking confirmed media), ``services.index``, ``services.audit``,
domain, store.
"""
