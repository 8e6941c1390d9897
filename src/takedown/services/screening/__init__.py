""" "May this be published?": matching signals against the banks and answering with a
verdict. ``matcher.py`` (``Matcher``: index candidates checked against current rows,
exact lookups, video), ``video.py`` (frame hits to the video rule), ``service.py``
(``ScreeningService``: bytes or hashes in, verdict out) and ``recorder.py`` (the group
commit of matched screenings).

May import: ``services.index``, signals, media, matching, domain, store. Not banks'
use cases, cases or anything above.
"""
