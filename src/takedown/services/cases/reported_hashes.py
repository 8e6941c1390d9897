"""Hash-only reports: finding content from the hashes a reporter's device computed.

A reporter who has the image can send its MD5 and PDQ hashes instead of the file
(``domain.reports.ReportedHash``; the browser computes them, see
docs/browser-hashing.md). This module turns those hashes into what a URL gives:

- **now**: the registered items whose media have the same MD5, or a PDQ within the
  radius of any of the 8 dihedral variants (a rotated or mirrored re-upload), and the
  bank entries they match (known material: the case says so);
- **later**: the hashes are kept as the case's locations (kinds ``md5`` and ``pdq``);
  an item registered afterwards whose media match them joins the case, as an item at a
  reported URL does. Reported PDQs are followed in memory by id (``IndexFollower``),
  like bank entries, so a later upload is checked in microseconds.

A withdrawn report's locations are deleted; the in-memory index only grows, so every
hit is checked against the rows that still exist (as disabled bank entries are).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from takedown.domain.reports import ReportedHash
from takedown.media.pdq import DIHEDRAL_NAMES
from takedown.services.cases.copies import PDQ_QUALITY_FLOOR, PDQ_RADIUS, Copy, chunks
from takedown.services.index.follower import IndexFollower
from takedown.services.screening.matcher import Matcher, QuerySignals
from takedown.store import repositories as repo
from takedown.store.models import Bank, CaseLocation, ItemMedia, Media
from takedown.store.valuesets import in_values

# The follower reads reported PDQs only; their inserts hold REPORTED_HASH_INSERTS so
# ids become visible in commit order (see store/repositories.lock_inserts).
REPORTED_PDQ_ROWS = (
    "SELECT id, value FROM case_locations WHERE kind = 'pdq' AND id > :cursor ORDER BY id LIMIT :n"
)
REASON = "reported_hash"  # why an item is in a case: its media matched reported hashes


class HashedMedia(Protocol):
    """A media row or a registry event's media: what is compared with reported hashes."""

    @property
    def md5(self) -> str | None: ...
    @property
    def pdq(self) -> str | None: ...
    @property
    def pdq_quality(self) -> int | None: ...


@dataclass(frozen=True)
class HashFindings:
    copies: dict[int, Copy]  # item id -> how it matched (distance 0 for the same bytes)
    bank_sources: set[str]  # sources of the bank entries the hashes match


def usable_pdq(h: ReportedHash) -> tuple[str, ...]:
    """The PDQ variants worth searching: a low-quality PDQ (a nearly flat image)
    matches unrelated pictures, so below the floor only the MD5 is used."""
    if h.pdq_quality is not None and h.pdq_quality < PDQ_QUALITY_FLOOR:
        return ()
    return h.pdq_variants


class ReportedHashes:
    def __init__(self, media_index: IndexFollower, reported: IndexFollower, matcher: Matcher):
        self._media_index = media_index
        self._reported = reported
        self._matcher = matcher

    @property
    def matcher(self) -> Matcher:
        """The bank matcher (also what ``cases/negative.py`` screens copies with)."""
        return self._matcher

    # -- at report time ------------------------------------------------------------------
    def find(self, s: Session, hashes: Sequence[ReportedHash]) -> HashFindings:
        best: dict[int, int] = {}  # media id -> smallest distance
        md5s = sorted({h.md5 for h in hashes if h.md5})
        for part in chunks(md5s):
            for mid in s.scalars(select(Media.id).where(Media.md5.in_(part))):
                best[mid] = 0
        variants = [v for h in hashes for v in usable_pdq(h)]
        if variants:
            result = self._media_index.search(variants, PDQ_RADIUS)
            for mid, d in zip(result.ids.tolist(), result.distances.tolist(), strict=True):
                if d < best.get(mid, PDQ_RADIUS + 1):
                    best[mid] = d
        copies: dict[int, Copy] = {}
        for part in chunks(sorted(best)):
            rows = s.execute(
                select(ItemMedia.item_id, ItemMedia.media_id, Media.pdq_quality)
                .join(Media, Media.id == ItemMedia.media_id)
                .where(ItemMedia.media_id.in_(part))
            ).all()
            for item_id, media_id, quality in rows:
                d = best[media_id]
                if d and quality is not None and quality < PDQ_QUALITY_FLOOR:
                    continue  # a near match on a flat picture says nothing
                if item_id not in copies or d < (copies[item_id].distance or 0):
                    copies[item_id] = Copy(item_id, REASON, d)
        return HashFindings(copies, self._bank_sources(s, hashes))

    def _bank_sources(self, s: Session, hashes: Sequence[ReportedHash]) -> set[str]:
        sources: set[str] = set()
        for h in hashes:
            variants = usable_pdq(h)
            names = DIHEDRAL_NAMES[: len(variants)]  # the browser sends them in this order
            matches = self._matcher.find(
                s,
                QuerySignals(
                    pdq_variants=tuple(zip(names, variants, strict=True)),
                    pdq_quality=h.pdq_quality,
                    md5=h.md5,
                    others=[(name, value, None) for name, value in h.signals],
                ),
            )
            for match in matches:
                sources.add(s.get_one(Bank, match.bank.bank_id).source)
        return sources

    def keep(
        self, s: Session, case_id: int, report_id: int, hashes: Sequence[ReportedHash]
    ) -> None:
        """Keep the hashes as the case's locations, so later uploads join it."""
        md5_rows = [
            {"case_id": case_id, "kind": "md5", "value": h.md5, "report_id": report_id}
            for h in hashes
            if h.md5
        ]
        pdq_rows = [
            {"case_id": case_id, "kind": "pdq", "value": v, "report_id": report_id}
            for h in hashes
            for v in usable_pdq(h)
        ]
        if md5_rows:
            s.execute(insert(CaseLocation), md5_rows)
        if pdq_rows:
            repo.lock_inserts(s, repo.REPORTED_HASH_INSERTS)
            s.execute(insert(CaseLocation), pdq_rows)

    # -- later uploads -------------------------------------------------------------------
    def media_matching(self, s: Session, media: Sequence[HashedMedia]) -> set[int]:
        """Which of ``media`` (their positions) may match a case's reported hashes:
        what :meth:`cases_for_media` looks up, for a whole batch in a few reads."""
        found: set[int] = set()
        md5s = sorted({m.md5 for m in media if m.md5})
        known: set[str] = set()
        if md5s:  # the whole set one parameter (store/valuesets.py)
            known.update(
                s.scalars(
                    select(CaseLocation.value).where(
                        CaseLocation.kind == "md5", in_values(s, CaseLocation.value, md5s)
                    )
                )
            )
        found.update(i for i, m in enumerate(media) if m.md5 and m.md5 in known)
        asked = [
            (i, m.pdq)
            for i, m in enumerate(media)
            if m.pdq and (m.pdq_quality is None or m.pdq_quality >= PDQ_QUALITY_FLOOR)
        ]
        if asked:
            result = self._reported.search([h for _, h in asked], PDQ_RADIUS)
            found.update(asked[qi][0] for qi in set(result.query_index.tolist()))
        return found

    def cases_for_media(self, s: Session, media: Sequence[HashedMedia]) -> dict[int, int | None]:
        """Case id -> distance for the cases whose reported hashes these media match."""
        found: dict[int, int | None] = {}
        md5s = sorted({m.md5 for m in media if m.md5})
        for part in chunks(md5s):
            for case_id in s.scalars(
                select(CaseLocation.case_id).where(
                    CaseLocation.kind == "md5", CaseLocation.value.in_(part)
                )
            ):
                found[case_id] = 0
        pdqs = [
            m.pdq
            for m in media
            if m.pdq and (m.pdq_quality is None or m.pdq_quality >= PDQ_QUALITY_FLOOR)
        ]
        if pdqs:
            result = self._reported.search(pdqs, PDQ_RADIUS)
            distance: dict[int, int] = {}
            for loc, d in zip(result.ids.tolist(), result.distances.tolist(), strict=True):
                distance[loc] = min(d, distance.get(loc, d))
            for part in chunks(sorted(distance)):
                # Only locations that still exist: a withdrawn report's are deleted.
                for loc_id, case_id in s.execute(
                    select(CaseLocation.id, CaseLocation.case_id).where(CaseLocation.id.in_(part))
                ).all():
                    d = distance[loc_id]
                    if case_id not in found or d < (found[case_id] or 0):
                        found[case_id] = d
        return found
