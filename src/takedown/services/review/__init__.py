"""The review console's use cases: queues, claiming and releasing cases, escalation,
case media with their bank matches, media views (audited), reviewer wellness and the
dashboard (``service.py``: ``ReviewService``).

May import: ``services.cases``, ``services.screening``, ``services.audit``, domain,
store (blobs).
"""
