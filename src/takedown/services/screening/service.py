"""Upload screening: "may this be published?" — answered from the banks' policies."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.screening import Verdict, verdict_for
from takedown.errors import InvalidRequest
from takedown.media import ImageLimits, MediaSignals
from takedown.media.video import VideoSignals, hash_image_upload, hash_video_bytes, is_video
from takedown.media.video_limits import DEFAULT_SAMPLING, VideoLimits, VideoSampling
from takedown.metrics import observe_screening
from takedown.services.screening.matcher import Match, Matcher, QuerySignals
from takedown.services.screening.recorder import ScreeningRecord, ScreeningRecorder
from takedown.signals import MD5, PDQ, SHA256, TMK, VPDQ, signal_type


@dataclass(frozen=True)
class MatchView:
    bank: str
    bank_id: str
    entry_id: str
    signal_type: str
    value: str
    distance: int
    threshold: int | None
    variant: str | None
    action: str
    source: str
    source_id: str | None
    category: str | None
    added_at: datetime
    # A video match: kind, shares of frames matched and the time ranges on both
    # timelines (see domain/video.py).
    video: dict[str, object] | None = None

    @classmethod
    def of(cls, m: Match) -> MatchView:
        e = m.entry
        return cls(
            bank=m.bank.name,
            bank_id=m.bank_public_id,
            entry_id=e.public_id,
            signal_type=m.signal_type,
            value=e.value,
            distance=m.distance,
            threshold=m.threshold,
            variant=m.variant,
            action=m.bank.match_action.value,
            source=e.source,
            source_id=e.source_id,
            category=e.category,
            added_at=e.added_at,
            video=m.video_dict(),
        )


@dataclass(frozen=True)
class ScreeningResult:
    verdict: Verdict
    matches: list[MatchView]
    screening_id: str | None  # set when something matched and the screening was kept
    md5: str | None
    sha256: str | None
    pdq: str | None
    pdq_quality: int | None
    media: MediaSignals | None = None
    video: VideoSignals | None = None  # set when the upload was a video
    # Set while a matched screening still has to be written (``record=False``).
    pending: ScreeningRecord | None = None
    # Signals of other types that were screened (plug-ins; computed or given).
    signals: dict[str, str] = field(default_factory=dict)
    # Types given that are stored and exchanged but not matched here (e.g. PhotoDNA):
    # said, not silently ignored.
    not_matchable: list[str] = field(default_factory=list)


class ScreeningService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        matcher: Matcher,
        limits: ImageLimits,
        video_limits: VideoLimits | None = None,
        video_sampling: VideoSampling | None = None,
    ) -> None:
        self._recorder = ScreeningRecorder(sessions)
        self._matcher = matcher
        self._limits = limits
        self._video_limits = video_limits
        self._video_sampling = video_sampling

    def screen_media(
        self, data: bytes, *, actor: str, content_ref: str | None = None
    ) -> ScreeningResult:
        """Hash the upload (all 8 dihedral PDQ variants, MD5, SHA-256) and screen it.
        A video is screened by its frames (vPDQ) and its file digests."""
        if is_video(data):
            return self.screen_video(data, actor=actor, content_ref=content_ref)
        started = time.perf_counter()
        signals = hash_image_upload(data, self._limits)
        query = QuerySignals(
            pdq_variants=signals.pdq.dihedral,
            pdq_quality=signals.pdq.quality,
            md5=signals.md5,
            sha256=signals.sha256,
            others=[(name, value, q) for name, (value, q) in signals.others.items()],
        )
        result = self._screen(query, actor=actor, content_ref=content_ref)
        observe_screening("image", result.verdict.value, time.perf_counter() - started)
        return replace(self.record(result), media=signals)

    def screen_video(
        self, data: bytes, *, actor: str, content_ref: str | None = None
    ) -> ScreeningResult:
        """Hash a video (one PDQ a second, MD5, SHA-256) and screen it: banked videos it
        copies, contains or was cut from, banked images one of its frames shows."""
        started = time.perf_counter()
        sampling = self._video_sampling or DEFAULT_SAMPLING
        if self._matcher.wants_tmk():  # a bank holds TMK entries to compare with
            sampling = replace(sampling, tmk=True)
        video = hash_video_bytes(data, self._video_limits, sampling)
        query = QuerySignals(
            md5=video.md5,
            sha256=video.sha256,
            video_frames=video.frames,
            video_interval=sampling.seconds_per_hash,
            tmk=video.tmk,
        )
        result = self._screen(query, actor=actor, content_ref=content_ref)
        observe_screening("video", result.verdict.value, time.perf_counter() - started)
        return replace(self.record(result), video=video)

    def screen_hashes(
        self,
        *,
        actor: str,
        pdq: str | None = None,
        pdq_quality: int | None = None,
        pdq_variants: list[str] | None = None,
        md5: str | None = None,
        sha256: str | None = None,
        signals: Mapping[str, str] | None = None,
        content_ref: str | None = None,
        record: bool = True,
    ) -> ScreeningResult:
        """Screen precomputed hashes. Dihedral variants can only be computed from the
        image, so a caller that wants rotated/flipped copies found sends them in
        ``pdq_variants`` (our ``takedown hash`` prints them).

        With ``record=False`` nothing is written: a matched result carries ``pending``
        for :meth:`record`, so a caller on an event loop can read on the loop and write
        in a thread (a write may wait for the database's write lock).

        ``signals`` holds hashes of any registered type by name (plug-ins, PhotoDNA);
        PDQ, MD5 and SHA-256 may come there too instead of their own fields."""
        started = time.perf_counter()
        others: list[tuple[str, str, int | None]] = []
        not_matchable: list[str] = []
        tmk: str | None = None
        for name, value in (signals or {}).items():
            st = signal_type(name)
            if st is VPDQ:
                raise InvalidRequest(
                    "A vpdq signal is a video's set of frame hashes: screen the video's "
                    "bytes (POST /v1/screen) instead.",
                    code="invalid_request",
                )
            if st in (PDQ, MD5, SHA256):
                given = {PDQ: pdq, MD5: md5, SHA256: sha256}[st]
                if given is not None and st.normalize(given) != st.normalize(value):
                    raise InvalidRequest(
                        f"Two different {st.name} hashes were given (in {st.name} and in signals).",
                        code="conflicting_signals",
                    )
                if st is PDQ:
                    pdq = value
                elif st is MD5:
                    md5 = value
                else:
                    sha256 = value
            elif not st.matchable:
                st.normalize(value)  # a malformed value is still the caller's mistake
                not_matchable.append(st.name)
            elif st is TMK:
                tmk = st.normalize(value)
            else:
                others.append((st.name, st.normalize(value), None))
        if not (pdq or md5 or sha256 or others or not_matchable or tmk):
            raise InvalidRequest(
                "Give at least one hash to screen: pdq, md5 or sha256.", code="no_signals"
            )
        if pdq_quality is not None and not 0 <= pdq_quality <= 100:
            raise InvalidRequest("pdq_quality must be between 0 and 100.", code="invalid_quality")
        variants: list[tuple[str, str]] = []
        if pdq:
            variants.append(("original", PDQ.normalize(pdq)))
            for i, v in enumerate(pdq_variants or [], start=1):
                variants.append((f"variant{i}", PDQ.normalize(v)))
        elif pdq_variants:
            raise InvalidRequest("pdq_variants need pdq as well.", code="invalid_request")
        query = QuerySignals(
            pdq_variants=variants,
            pdq_quality=pdq_quality,
            md5=MD5.normalize(md5) if md5 else None,
            sha256=SHA256.normalize(sha256) if sha256 else None,
            others=others,
            tmk=tmk,
        )
        result = self._screen(query, actor=actor, content_ref=content_ref)
        result = replace(result, not_matchable=sorted(not_matchable))
        observe_screening("hashes", result.verdict.value, time.perf_counter() - started)
        return self.record(result) if record else result

    def record(self, result: ScreeningResult) -> ScreeningResult:
        """Write a matched screening that was screened with ``record=False``."""
        if result.pending is None:
            return result
        return replace(result, screening_id=self._recorder.record(result.pending), pending=None)

    async def record_async(self, result: ScreeningResult) -> ScreeningResult:
        """:meth:`record` for a caller on an event loop: the loop serves other requests
        while the write commits, batched with theirs (services/screening/recorder.py)."""
        if result.pending is None:
            return result
        screening_id = await self._recorder.record_async(result.pending)
        return replace(result, screening_id=screening_id, pending=None)

    def close(self) -> None:
        self._recorder.close()

    def _screen(
        self, query: QuerySignals, *, actor: str, content_ref: str | None
    ) -> ScreeningResult:
        # The common case, a PDQ with no index hit and no exact hash to look up, never
        # touches the database.
        matches = self._matcher.check(query, self._matcher.candidates(query))
        views = [MatchView.of(m) for m in matches]
        verdict = verdict_for(m.bank.match_action for m in matches)
        pdq = query.pdq_variants[0][1] if query.pdq_variants else None
        pending = (
            ScreeningRecord(query, matches, verdict.value, actor, content_ref) if matches else None
        )
        return ScreeningResult(
            verdict=verdict,
            matches=views,
            screening_id=None,
            md5=query.md5,
            sha256=query.sha256,
            pdq=pdq,
            pdq_quality=query.pdq_quality,
            pending=pending,
            signals={name: value for name, value, _ in query.others},
        )
