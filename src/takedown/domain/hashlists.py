"""Read and write hash-list files in the formats trust & safety teams exchange.

Three formats, all line-oriented so a list of millions streams without loading a parser
for the whole file:

``text``
    One hash per line. Blank lines and ``#`` comments are skipped. The line carries no
    type, so the caller says which type the list holds (or it is guessed by length).
``csv``
    ``signal_type,signal`` rows without a header, as python-threatexchange and Meta's
    HMA write them. A header row starting the file may name more columns:
    ``quality``, ``source``, ``source_id``, ``category``, ``note`` are read;
    ``hash``/``signal_str`` are accepted for ``signal`` (threatexchange's
    ``dataset --csv`` writes ``signal_str``); other named columns (``collab``,
    ``tags``...) are ignored and listed in :attr:`ParseResult.ignored_columns`.
``jsonl``
    One JSON object per line: ``signal_type``, ``signal`` (or ``hash``), optionally
    ``quality``, ``source``, ``source_id``, ``category``, ``note``; other keys are
    ignored, as JSON consumers conventionally do.

Parsing never stops at a bad line: every line is either a record, a duplicate (counted),
or a :class:`RejectedLine` with its 1-based number and a sentence saying what is wrong,
so an analyst can fix a 100,000-line file in one pass instead of one error at a time.
Only problems that make the whole file unreadable (an unknown format, a CSV header
without a signal column) raise.

This module does no I/O of its own and imports no framework: callers hand it lines and
a text stream, so the CLI, the API and tests share exactly the same rules.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TextIO

from takedown.errors import InvalidHash, InvalidRequest, TakedownError
from takedown.signals import SignalType, guess_signal_type, signal_type

FORMATS = ("text", "csv", "jsonl")

PROVENANCE_FIELDS = ("source", "source_id", "category", "note")
CSV_HEADER = ("signal_type", "signal")
# A TMK value is ~176,000 base64 characters, over the csv module's default field limit
# (131,072). The limit is process-wide; this only raises it.
csv.field_size_limit(max(csv.field_size_limit(), 4_194_304))
CSV_PROVENANCE_HEADER = (*CSV_HEADER, "quality", *PROVENANCE_FIELDS)

_REJECTED_TEXT_LIMIT = 200
_EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "txt": "text"}

# Header names -> HashRecord fields. Several tools name the hash column differently.
_CSV_COLUMNS = {
    "signal_type": "signal_type",
    "signal": "value",
    "hash": "value",
    "signal_str": "value",
    "quality": "quality",
    **{name: name for name in PROVENANCE_FIELDS},
}
_JSON_VALUE_KEYS = ("signal", "hash", "signal_str")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class HashRecord:
    """One banked hash and where it came from.

    Construction validates and normalizes (canonical type name such as ``sha256`` for
    ``SHA-256``, lowercase hex), raising :class:`~takedown.errors.InvalidHash` or
    :class:`~takedown.errors.InvalidRequest`; a record that exists is therefore always
    safe to store, compare and write back out.
    """

    signal_type: str
    value: str
    quality: int | None = None
    source: str | None = None
    source_id: str | None = None
    category: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.signal_type, str) or not isinstance(self.value, str):
            raise InvalidHash("A hash and its signal type must be text.")
        kind = signal_type(self.signal_type)
        object.__setattr__(self, "signal_type", kind.name)
        object.__setattr__(self, "value", kind.normalize(self.value))
        object.__setattr__(self, "quality", _check_quality(self.quality))

    @classmethod
    def canonical(cls, type_name: str, value: str) -> HashRecord:
        """A record from a canonical type name and a value already known to be in
        canonical form (checked by the caller), without validating it again."""
        return cls.stored(type_name, value)

    @classmethod
    def stored(
        cls,
        type_name: str,
        value: str,
        quality: int | None = None,
        source: str | None = None,
        source_id: str | None = None,
        category: str | None = None,
        note: str | None = None,
    ) -> HashRecord:
        """A record as a bank stores it (validated when it went in), not validated
        again: exports still write entries of a type whose plug-in was removed."""
        record = object.__new__(cls)
        record.__dict__.update(
            signal_type=type_name,
            value=value,
            quality=quality,
            source=source,
            source_id=source_id,
            category=category,
            note=note,
        )
        return record


@dataclass(frozen=True)
class RejectedLine:
    """A line that was not imported. ``reason`` is a sentence without the line number,
    so callers can place it (``str()`` gives the ``line 7: ...`` form)."""

    line_number: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.reason}"


@dataclass
class ParseResult:
    records: list[HashRecord] = field(default_factory=list)
    rejected: list[RejectedLine] = field(default_factory=list)
    duplicates_in_file: int = 0
    # CSV header columns that were named but not read (e.g. threatexchange's "tags").
    ignored_columns: list[str] = field(default_factory=list)


def _check_quality(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidRequest(
            f"PDQ quality must be a whole number from 0 to 100; got {_preview(value)}.",
            code="invalid_quality",
        )
    return value


# --------------------------------------------------------------------------- parsing

# What a format reader yields per non-skipped line: its number, its raw text, and either
# the record or the reason it was rejected.
_Entry = tuple[int, str, HashRecord | str]


def parse_hash_list(
    lines: Iterable[str],
    fmt: str,
    default_type: SignalType | None = None,
    allowed_types: set[str] | None = None,
) -> ParseResult:
    """Parse a hash list into records, rejected lines and a duplicate count.

    ``default_type`` is the type of a ``text`` list (guessed per line when None) and
    fills a missing type in ``csv``/``jsonl``. ``allowed_types`` (type names; aliases
    accepted) rejects lines of other types, e.g. a PDQ-only bank. A hash repeated in
    the file is kept once and counted in ``duplicates_in_file``.
    """
    fmt = _check_format(fmt)
    allowed = None if allowed_types is None else {signal_type(n).name for n in allowed_types}
    result = ParseResult()
    seen: set[tuple[str, str]] = set()
    entries: Iterator[_Entry]
    if fmt == "csv":
        reader = _CsvReader(default_type)
        entries = reader.read(_strip_bom(lines))
    else:
        entries = _read_lines(_strip_bom(lines), _PARSERS[fmt], default_type)
    for line_number, text, outcome in entries:
        if isinstance(outcome, HashRecord) and allowed is not None:
            outcome = _check_allowed(outcome, allowed)
        if isinstance(outcome, str):
            result.rejected.append(_rejected(line_number, text, outcome))
            continue
        key = (outcome.signal_type, outcome.value)
        if key in seen:
            result.duplicates_in_file += 1
        else:
            seen.add(key)
            result.records.append(outcome)
    if fmt == "csv":
        result.ignored_columns = reader.ignored_columns
    return result


def detect_format(first_line: str, filename: str | None) -> str:
    """Guess a list's format: by extension (.csv, .jsonl/.ndjson, .txt), else by content.

    Content rules, from one line: ``{`` starts JSON, a ``#`` comment marks a text list,
    a comma means CSV, anything else is a text list.
    """
    if filename:
        base = filename.replace("\\", "/").rsplit("/", 1)[-1]
        if "." in base:
            found = _EXTENSIONS.get(base.rsplit(".", 1)[1].lower())
            if found:
                return found
    text = first_line.lstrip("\ufeff").strip()
    if text.startswith("{"):
        return "jsonl"
    if text.startswith("#"):
        return "text"
    return "csv" if "," in text else "text"


def _check_format(fmt: str) -> str:
    name = fmt.strip().lower() if isinstance(fmt, str) else ""
    if name not in FORMATS:
        raise InvalidRequest(
            f"Unknown hash-list format {_preview(fmt)}; use one of: {', '.join(FORMATS)}.",
            code="unknown_format",
        )
    return name


def _check_allowed(record: HashRecord, allowed: set[str]) -> HashRecord | str:
    if record.signal_type in allowed:
        return record
    accepted = ", ".join(sorted(allowed)) or "none"
    return f"{record.signal_type} hashes are not accepted here; accepted types: {accepted}."


def _rejected(line_number: int, text: str, reason: str) -> RejectedLine:
    return RejectedLine(line_number, text.rstrip("\r\n")[:_REJECTED_TEXT_LIMIT], reason)


def _strip_bom(lines: Iterable[str]) -> Iterator[str]:
    """Drop a UTF-8 byte-order mark (Excel writes one) from the first line."""
    iterator = iter(lines)
    first = next(iterator, None)
    if first is None:
        return
    yield first.lstrip("\ufeff")
    yield from iterator


def _skipped(text: str) -> bool:
    """Blank lines and ``#`` comments carry no hash in any format."""
    stripped = text.strip()
    return not stripped or stripped.startswith("#")


def _record(build: Callable[[], HashRecord]) -> HashRecord | str:
    """Run a record builder; a caller's mistake becomes the line's rejection reason."""
    try:
        return build()
    except TakedownError as exc:
        return exc.message


# ---------------------------------------------------------------- text and jsonl

_LineParser = Callable[[str, SignalType | None], HashRecord]


def _read_lines(
    lines: Iterable[str], parse: _LineParser, default_type: SignalType | None
) -> Iterator[_Entry]:
    # A million-line list of one known type is mostly lines already in canonical form
    # (lowercase hex of the right length): those skip the general path, which validates
    # the same thing at ~30 times the cost.
    canonical = None
    if parse is _parse_text_line and default_type is not None and default_type.hex_digits:
        canonical = re.compile(f"[0-9a-f]{{{default_type.hex_digits}}}").fullmatch
    for line_number, line in enumerate(lines, start=1):
        if canonical is not None and canonical(line):
            yield line_number, line, HashRecord.canonical(default_type.name, line)  # type: ignore[union-attr]
        elif not _skipped(line):
            yield line_number, line, _record(partial(parse, line, default_type))


def _parse_text_line(line: str, default_type: SignalType | None) -> HashRecord:
    kind = default_type or guess_signal_type(line)
    return HashRecord(kind.name, line)


def _parse_jsonl_line(line: str, default_type: SignalType | None) -> HashRecord:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"This line is not valid JSON: {exc.msg} (column {exc.colno})."
        ) from None
    if not isinstance(obj, dict):
        raise InvalidRequest(f"Each line must be a JSON object; got {_json_kind(obj)}.")
    return HashRecord(
        _type_name(_json_text(obj, "signal_type"), default_type),
        _json_value(obj),
        obj.get("quality"),
        *(_json_text(obj, name, numbers=name == "source_id") for name in PROVENANCE_FIELDS),
    )


def _json_value(obj: dict[str, Any]) -> str:
    """The hash, under whichever of the accepted keys the producer used."""
    given = {key: obj[key] for key in _JSON_VALUE_KEYS if obj.get(key) is not None}
    if not given:
        raise InvalidHash("The line has no hash: expected a 'signal' (or 'hash') key.")
    if len({str(value).strip().lower() for value in given.values()}) > 1:
        keys = " and ".join(repr(key) for key in given)
        raise InvalidHash(f"The line gives different hashes under {keys}.")
    key, value = next(iter(given.items()))
    if not isinstance(value, str):
        raise InvalidHash(f"{key!r} must be a string of hex digits; got {_json_kind(value)}.")
    return value


def _json_text(obj: dict[str, Any], key: str, *, numbers: bool = False) -> str | None:
    """An optional text field; ``numbers`` accepts integer ids some exports emit."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return _blank_to_none(value)
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidRequest(f"{key!r} must be a string; got {_json_kind(value)}.")


def _json_kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


_PARSERS: dict[str, _LineParser] = {"text": _parse_text_line, "jsonl": _parse_jsonl_line}


# ---------------------------------------------------------------- csv


class _CsvReader:
    """CSV rows with their starting line numbers, honouring an optional header.

    The csv module is used (not ``str.split``) because provenance notes may be quoted
    and contain commas or even newlines; a tap records the raw lines behind each row so
    rejections can quote the text and number the line where the row starts.
    """

    def __init__(self, default_type: SignalType | None) -> None:
        self._default_type = default_type
        self._columns: list[str | None] = ["signal_type", "value"]
        self._has_header = False
        self.ignored_columns: list[str] = []

    def read(self, lines: Iterable[str]) -> Iterator[_Entry]:
        tap = _LineTap(lines)
        reader = csv.reader(tap)
        first_row = True
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                start, text = tap.take()
                yield start, text, f"Unreadable CSV (lines {start}-{tap.consumed}): {exc}."
                continue
            start, text = tap.take()
            if first_row and self._is_header(cells):
                self._use_header(cells)
                first_row = False
                continue
            first_row = False
            yield start, text, _record(partial(self._to_record, cells))

    @staticmethod
    def _is_header(cells: list[str]) -> bool:
        return "signal_type" in (cell.strip().lower() for cell in cells)

    def _use_header(self, cells: list[str]) -> None:
        names = [cell.strip().lower() for cell in cells]
        columns = [_CSV_COLUMNS.get(name) for name in names]
        mapped = [column for column in columns if column is not None]
        if "value" not in mapped:
            raise InvalidRequest(
                "The CSV header names no hash column; expected 'signal' (or 'hash').",
                code="invalid_header",
            )
        if len(mapped) != len(set(mapped)):
            raise InvalidRequest(
                f"The CSV header names a column twice: {', '.join(names)}.",
                code="invalid_header",
            )
        self._columns = columns
        self._has_header = True
        self.ignored_columns = [n for n, c in zip(names, columns, strict=True) if c is None]

    def _to_record(self, cells: list[str]) -> HashRecord:
        if len(cells) != len(self._columns):
            raise InvalidRequest(self._width_problem(len(cells)))
        fields = {
            column: _blank_to_none(cell.strip())
            for column, cell in zip(self._columns, cells, strict=True)
            if column is not None
        }
        value = fields.pop("value")
        if value is None:
            raise InvalidHash("The row has no hash.")
        return HashRecord(
            _type_name(fields.pop("signal_type", None), self._default_type),
            value,
            _csv_quality(fields.pop("quality", None)),
            **fields,
        )

    def _width_problem(self, width: int) -> str:
        if self._has_header:
            return f"The row has {width} columns but the header names {len(self._columns)}."
        return (
            f"The row has {width} column{'s' if width != 1 else ''}; without a header a CSV "
            "row is signal_type,signal (a list of bare hashes is the text format)."
        )


class _LineTap:
    """Feeds lines to csv.reader, remembering where each row starts and its raw text.

    Blank and ``#`` lines are dropped here, between rows, rather than after parsing:
    a quote inside a comment would otherwise open a quoted field that swallows the
    lines after it. Inside a quoted field (a multi-line note) every line is content.
    Lines get a newline when missing (``str.splitlines()`` strips them) so such a note
    keeps its line breaks.
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self._pending: list[str] = []
        self._start = 0
        self.consumed = 0

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.consumed += 1
        while not self._pending and _skipped(line):
            line = next(self._lines)
            self.consumed += 1
        if not self._pending:
            self._start = self.consumed
        self._pending.append(line)
        return line if line.endswith(("\n", "\r")) else line + "\n"

    def take(self) -> tuple[int, str]:
        """Line number and raw text (its lines joined) of the row just read."""
        text = "\n".join(line.rstrip("\r\n") for line in self._pending)
        self._pending = []
        return self._start, text


def _csv_quality(cell: str | None) -> int | None:
    if cell is None:
        return None
    if not cell.isascii() or not cell.isdigit():
        return _check_quality(cell)  # raises with the standard sentence
    return _check_quality(int(cell))


# ---------------------------------------------------------------- shared helpers


def _type_name(given: str | None, default_type: SignalType | None) -> str:
    """The row's own type, else the caller's default; typed formats never guess."""
    if given:
        return given
    if default_type is not None:
        return default_type.name
    raise InvalidHash(
        "The signal type is missing (pdq, md5 or sha256).", code="unknown_signal_type"
    )


def _blank_to_none(value: str | None) -> str | None:
    return value if value else None


def _preview(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


# --------------------------------------------------------------------------- writing


def write_hash_list(
    records: Iterable[HashRecord], fmt: str, out: TextIO, *, with_provenance: bool = False
) -> int:
    """Write records to ``out`` and return how many were written.

    By default only what other tools read is written: bare hashes (``text``), header-less
    ``signal_type,signal`` rows (``csv``), and type, hash and quality (``jsonl``).
    Provenance (source, source id, category, analyst notes) is internal case data that
    must not leak into a list shared with another platform, so it is written only when
    ``with_provenance`` is set (``csv`` then gains a header naming the extra columns).

    A ``text`` list cannot say which type each line is, so records of more than one type
    raise :class:`~takedown.errors.InvalidRequest` (``mixed_signal_types``) rather than
    produce a list that would be read back wrongly (SHA-256 would be taken for PDQ).
    """
    fmt = _check_format(fmt)
    writers: dict[str, Callable[[Iterable[HashRecord], TextIO, bool], int]] = {
        "text": _write_text,
        "csv": _write_csv,
        "jsonl": _write_jsonl,
    }
    return writers[fmt](records, out, with_provenance)


def _write_text(records: Iterable[HashRecord], out: TextIO, _provenance: bool) -> int:
    count = 0
    first_type: str | None = None
    for record in records:
        first_type = first_type or record.signal_type
        if record.signal_type != first_type:
            raise InvalidRequest(
                f"A text list holds one signal type, but these records mix {first_type} and "
                f"{record.signal_type}; export as csv or jsonl, or one type at a time.",
                code="mixed_signal_types",
            )
        out.write(record.value + "\n")
        count += 1
    return count


def _write_csv(records: Iterable[HashRecord], out: TextIO, provenance: bool) -> int:
    writer = csv.writer(out, lineterminator="\n")
    if provenance:
        writer.writerow(CSV_PROVENANCE_HEADER)
    count = 0
    for record in records:
        row: list[object] = [record.signal_type, record.value]
        if provenance:
            row.append("" if record.quality is None else record.quality)
            row.extend(getattr(record, name) or "" for name in PROVENANCE_FIELDS)
        writer.writerow(row)
        count += 1
    return count


def _write_jsonl(records: Iterable[HashRecord], out: TextIO, provenance: bool) -> int:
    count = 0
    for record in records:
        obj: dict[str, object] = {"signal_type": record.signal_type, "signal": record.value}
        if record.quality is not None:
            obj["quality"] = record.quality
        if provenance:
            for name in PROVENANCE_FIELDS:
                if getattr(record, name) is not None:
                    obj[name] = getattr(record, name)
        out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        count += 1
    return count
