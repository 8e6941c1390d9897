"""Request and response bodies of the HTTP API (the OpenAPI reference is built from
these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from takedown.services.banks.service import EntryView
from takedown.services.screening.service import MatchView


class ErrorOut(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    message: str = Field(description="What went wrong, in a sentence.")
    details: dict[str, Any] | None = None


class BankIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Unique name: lowercase letters, digits, '-', '_', '.'.")
    description: str = ""
    source: str = Field(
        "own",
        description="ncmec, stopncii, take_it_down, tech_coalition, threatexchange, own or other.",
    )
    match_action: str = Field("review", description="block, review or record.")
    restrict_on_match: bool = Field(
        False,
        description="A registered item matching this bank is restricted at once, "
        "pending review (restrict first).",
    )
    pdq_threshold: int | None = Field(
        None,
        description="Largest PDQ distance that matches (default from configuration, usually 31).",
    )
    pdq_quality_floor: int | None = Field(None, description="Lowest PDQ quality used (usually 50).")
    video_match_percent: int | None = Field(
        None,
        description="A video matches a banked one when this share (%) of the banked video's "
        "frames, or of a clip's own frames, match (usually 80).",
    )
    video_frame_threshold: int | None = Field(
        None, description="Largest PDQ distance between matching video frames (usually 31)."
    )


class BankPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    match_action: str | None = None
    restrict_on_match: bool | None = None
    pdq_threshold: int | None = None
    pdq_quality_floor: int | None = None
    enabled: bool | None = None
    reason: str | None = Field(None, description="Required when disabling.")
    video_match_percent: int | None = None
    video_frame_threshold: int | None = None


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signal_type: Literal["pdq", "md5", "sha256"]
    value: str = Field(description="The hash as hex (PDQ: 64 digits, MD5: 32, SHA-256: 64).")
    quality: int | None = Field(None, ge=0, le=100)
    source: str | None = Field(None, max_length=32)
    source_id: str | None = Field(None, max_length=200)
    category: str | None = Field(None, max_length=100)
    note: str | None = Field(None, max_length=5000)


class EntriesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entries: list[EntryIn] = Field(min_length=1, max_length=10_000)


class EntryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool
    reason: str | None = Field(
        None, description="Required when disabling, e.g. 'false positive: benign meme'."
    )


class EntryPage(BaseModel):
    entries: list[EntryView]
    next_cursor: str | None = Field(description="Pass as `after` for the next page.")


class ScreenHashesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pdq: str | None = Field(None, description="PDQ hash, 64 hex digits.")
    pdq_quality: int | None = Field(None, description="Quality the hasher reported (0-100).")
    pdq_variants: list[str] | None = Field(
        None,
        max_length=7,
        description="The other dihedral variants (rotations/flips) of the PDQ hash.",
    )
    md5: str | None = None
    sha256: str | None = None
    content_ref: str | None = Field(
        None, max_length=500, description="Your id for the upload, kept with matches."
    )


class ScreenOut(BaseModel):
    verdict: Literal["block", "review", "allow"]
    matches: list[MatchView]
    screening_id: str | None = Field(description="Set when something matched.")
    md5: str | None
    sha256: str | None
    pdq: str | None
    pdq_quality: int | None
    media_type: Literal["image", "video"] | None = Field(
        None, description="What the uploaded file was (file screenings only)."
    )
    video: dict[str, Any] | None = Field(
        None,
        description="For a video: container, codec, size, duration and the kept frame "
        "features (frame number, timestamp, PDQ, quality).",
    )


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    database: str
    indexed_pdq_hashes: int
