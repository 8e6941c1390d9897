"""What leaves Takedown for someone else, from outbox tables written in the use case's
own transaction: actions for the platform as signed webhooks with retries and dead
letters (``delivery.py``: ``OutboxService``, ``DeliveryDispatcher``), and mail to
reporters (``mail.py``: ``MailDispatcher``). The threads that run them are in
``takedown.runtime.workers``.

May import: ``services.audit``, integrations (webhooks, SMTP), store, errors, ids.
"""
