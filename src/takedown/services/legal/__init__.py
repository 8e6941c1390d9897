"""What the law requires: the legal queue and overdue alerts (``queue.py``), CyberTipline
reports to NCMEC (``cybertipline.py``), DSA statements of reasons (``dsa.py``), and the
transparency and TAKE IT DOWN figures (``transparency.py``), and alerts on the TAKE
IT DOWN 48 hours (``take_it_down.py``).

May import: ``services.evidence`` (what a filing preserves), ``services.cases`` (which
media and accounts a case holds), ``services.audit``, integrations, config, domain,
store.
"""
