"""Cases: the life of a report or match about a piece of material. Intake and
restriction (restrict first over the copy graph, ``intake.py``), decisions and appeals
(four eyes, ``decisions.py``), the reporter's public status and mail (``status.py``),
and reads for the API (``reads.py``), over shared state and helpers (``base.py``) and
answering with the values in ``views.py`` (``service.py``: ``CaseService``, composed
from those parts); the copy graph (``copies.py``), hash-only reports
(``reported_hashes.py``), account and reporter measures and re-upload banking
(``enforcement.py``), and which media belong to a case (``media.py``).

May import: ``services.screening`` (matching reported hashes against banks),
``services.banks`` (banking confirmed media), ``services.index``, ``services.audit``,
domain, store.
"""
