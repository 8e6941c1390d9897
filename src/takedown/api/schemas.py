"""Request and response bodies of the HTTP API (the OpenAPI reference is built from
these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from takedown.services.banks.service import EntryView
from takedown.services.screening.service import MatchView

# Every integer a request carries fits a signed 64-bit column (PostgreSQL BIGINT, SQLite
# INTEGER); a larger one is refused as invalid (422), never passed to the database. The
# bounds are written as powers of two (``lt=2**63``, not ``le=2**63 - 1``): the OpenAPI
# models hold them as doubles: 2**63 is one exactly, 2**63 - 1 is not.
Int64 = Annotated[int, Field(ge=-(2**63), lt=2**63)]
Count = Annotated[int, Field(ge=0, lt=2**63)]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        # api/errors.py answers this type with the code invalid_character.
        raise PydanticCustomError("nul_character", "NUL characters (U+0000) are not accepted")
    return value


# A text field of a multipart form (the body is not scanned for NUL as a whole, since its
# files are binary: see api/limits.py).
FormText = Annotated[str, AfterValidator(_no_nul)]


class ErrorOut(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    message: str = Field(description="What went wrong, in a sentence.")
    details: dict[str, Any] | None = None


class SignalSettingIn(BaseModel):
    """A bank's setting for one signal type; absent fields are left as they are."""

    model_config = ConfigDict(extra="forbid")
    threshold: Int64 | None = Field(
        None, description="Largest distance that matches (Hamming types)."
    )
    quality_floor: Int64 | None = Field(None, description="Lowest quality used (types with one).")
    match_percent: Int64 | None = Field(
        None, description="vpdq: share (%) of frames that must match."
    )


_SIGNAL_SETTINGS_DOC = (
    "Settings per signal type by name (GET /v1/signal-types), e.g. "
    '{"pdq": {"threshold": 24}, "my_dhash": {"threshold": 8}}; the PDQ and video fields '
    "above are shorthands for the pdq and vpdq settings."
)


class BankIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Unique name: lowercase letters, digits, '-', '_', '.'.")
    description: str = ""
    source: str = Field(
        "own",
        description="ncmec, stopncii, take_it_down, tech_coalition, threatexchange, own or other.",
    )
    match_action: str = Field(
        "review",
        description="block, review, record, or negative (a negative bank: known-benign "
        "hashes, never blocked, reviewed or restricted for a match).",
    )
    restrict_on_match: bool = Field(
        False,
        description="A registered item matching this bank is restricted at once, "
        "pending review (restrict first).",
    )
    pdq_threshold: Int64 | None = Field(
        None,
        description="Largest PDQ distance that matches (default from configuration, usually 31).",
    )
    pdq_quality_floor: Int64 | None = Field(
        None, description="Lowest PDQ quality used (usually 50)."
    )
    video_match_percent: Int64 | None = Field(
        None,
        description="A video matches a banked one when this share (%) of the banked video's "
        "frames, or of a clip's own frames, match (usually 80).",
    )
    video_frame_threshold: Int64 | None = Field(
        None, description="Largest PDQ distance between matching video frames (usually 31)."
    )
    signal_settings: dict[str, SignalSettingIn] | None = Field(
        None, max_length=32, description=_SIGNAL_SETTINGS_DOC
    )


class BankPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    match_action: str | None = None
    restrict_on_match: bool | None = None
    pdq_threshold: Int64 | None = None
    pdq_quality_floor: Int64 | None = None
    enabled: bool | None = None
    reason: str | None = Field(None, description="Required when disabling.")
    video_match_percent: Int64 | None = None
    video_frame_threshold: Int64 | None = None
    signal_settings: dict[str, SignalSettingIn] | None = Field(
        None, max_length=32, description=_SIGNAL_SETTINGS_DOC
    )
    share_to: list[Annotated[str, Field(max_length=100)]] | None = Field(
        None,
        max_length=20,
        description="The exchanges (names) this bank's confirmed hashes are offered to, "
        "replacing the list; [] turns sharing off (the default). Each offer waits for the "
        "legal team's approval (GET /v1/exchange-shares?state=pending).",
    )


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signal_type: str = Field(
        max_length=32,
        description="pdq, md5, sha256, photodna, or a plug-in type (GET /v1/signal-types).",
    )
    value: str = Field(
        max_length=1024,
        description="The hash as its type writes it (PDQ: 64 hex digits, MD5: 32, SHA-256: 64).",
    )
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
    all_signals: bool = Field(
        True,
        description="An entry banked from a file changes with the file's other signals "
        "(PDQ, MD5, SHA-256...), or the upload still matches on them; false changes this "
        "entry only.",
    )


class EntryPage(BaseModel):
    entries: list[EntryView]
    next_cursor: str | None = Field(description="Pass as `after` for the next page.")


class ScreenHashesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pdq: str | None = Field(None, description="PDQ hash, 64 hex digits.")
    pdq_quality: Int64 | None = Field(None, description="Quality the hasher reported (0-100).")
    pdq_variants: list[str] | None = Field(
        None,
        max_length=7,
        description="The other dihedral variants (rotations/flips) of the PDQ hash.",
    )
    md5: str | None = None
    sha256: str | None = None
    signals: dict[str, Annotated[str, Field(max_length=1024)]] | None = Field(
        None,
        max_length=16,
        description="Hashes of any signal type by name (see GET /v1/signal-types), for "
        "types without a field of their own: plug-in types, or PhotoDNA (stored and "
        "exchanged but not matchable here: named in not_matchable).",
    )
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
    signals: dict[str, str] = Field(
        default_factory=dict,
        description="Signals of plug-in types that were screened (given, or computed from "
        "the file).",
    )
    not_matchable: list[str] = Field(
        default_factory=list,
        description="Signal types given that Takedown stores and exchanges but cannot "
        "match here (e.g. photodna): they did not take part in the verdict.",
    )


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    database: str
    indexed_pdq_hashes: int


class ReadyOut(BaseModel):
    ready: bool
    # database, master_key, bank_index: "ok", or a sentence saying what is wrong.
    checks: dict[str, str]
