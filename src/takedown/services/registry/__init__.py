"""The content registry: accounts, items and media as the platform tells them, screened
on arrival and joined to the cases of what they copy (``service.py``:
``RegistryService``).

May import: ``services.cases``, ``services.screening``, ``services.audit``, signals,
media, domain, store.
"""
