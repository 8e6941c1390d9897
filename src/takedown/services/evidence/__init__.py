"""The evidence vault: sealed context documents of a case (``context.py``) with
references to the media blobs, holds, export, deletion and destruction (``vault.py``:
``EvidenceVault``).

May import: ``services.audit``, domain (``evidence``), store (blobs).
"""
