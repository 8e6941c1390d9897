"""Hash-list parsing and writing: round trips, rejections with line numbers, and the
format details other tools depend on (header-less CSV, threatexchange column names)."""

from __future__ import annotations

import io
import json

import pytest

from takedown.domain.hashlists import (
    FORMATS,
    HashRecord,
    ParseResult,
    RejectedLine,
    detect_format,
    parse_hash_list,
    write_hash_list,
)
from takedown.errors import InvalidHash, InvalidRequest
from takedown.signals import MD5, PDQ, SHA256

P1 = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
P2 = "0000000000000000000000000000000000000000000000000000000000000001"
M1 = "d41d8cd98f00b204e9800998ecf8427e"
S1 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def parse(text: str, fmt: str, **kwargs: object) -> ParseResult:
    return parse_hash_list(text.splitlines(), fmt, **kwargs)  # type: ignore[arg-type]


def write(records: list[HashRecord], fmt: str, **kwargs: bool) -> str:
    out = io.StringIO()
    assert write_hash_list(records, fmt, out, **kwargs) == len(records)
    return out.getvalue()


def rejected(result: ParseResult) -> list[tuple[int, str]]:
    return [(r.line_number, r.reason) for r in result.rejected]


FULL = [
    HashRecord("pdq", P1, 100, "ncmec", "case-1", "A1", 'note with, comma and "quotes"'),
    HashRecord("md5", M1, None, "internal", None, None, "two\nlines"),
    HashRecord("sha256", S1, None, None, "42", "B2", None),
    HashRecord("pdq", P2, 0),
]


# --------------------------------------------------------------------------- records


def test_record_normalizes_type_alias_and_hex_case() -> None:
    record = HashRecord("SHA-256", "  " + S1.upper() + "\n")
    assert (record.signal_type, record.value) == ("sha256", S1)
    assert HashRecord("pdq", P1.upper()) == HashRecord("pdq", P1)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("pdq", P1[:-1]), "invalid_hash"),
        (("md5", P1), "invalid_hash"),
        (("sha1", P1), "unknown_signal_type"),
        (("photodna", P1), "invalid_hash"),  # a registered type: 144 bytes, not 32
        (("pdq", P1, 101), "invalid_quality"),
        (("pdq", P1, -1), "invalid_quality"),
        (("pdq", P1, True), "invalid_quality"),
    ],
)
def test_record_refuses_invalid_values(args: tuple[object, ...], code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        HashRecord(*args)  # type: ignore[arg-type]
    assert caught.value.code == code


def test_rejected_line_reads_as_a_sentence() -> None:
    line = RejectedLine(7, "xyz", "A pdq hash is 64 hexadecimal digits; got 'xyz'.")
    assert str(line) == "line 7: A pdq hash is 64 hexadecimal digits; got 'xyz'."


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_typed_formats_round_trip_with_provenance(fmt: str) -> None:
    text = write(FULL, fmt, with_provenance=True)
    result = parse(text, fmt)
    assert result.records == FULL
    assert result.rejected == [] and result.duplicates_in_file == 0


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_typed_formats_round_trip_without_provenance(fmt: str) -> None:
    result = parse(write(FULL, fmt), fmt)
    keep_quality = fmt == "jsonl"  # header-less CSV is signal_type,signal only
    assert result.records == [
        HashRecord(r.signal_type, r.value, r.quality if keep_quality else None) for r in FULL
    ]


def test_text_round_trip() -> None:
    records = [HashRecord("pdq", P1), HashRecord("pdq", P2)]
    text = write(records, "text")
    assert text == f"{P1}\n{P2}\n"
    assert parse(text, "text", default_type=PDQ).records == records


def test_default_csv_is_the_headerless_two_column_form() -> None:
    assert write(FULL[:2], "csv") == f"pdq,{P1}\nmd5,{M1}\n"


def test_provenance_is_left_out_unless_asked_for() -> None:
    """Notes and case ids are internal; a shared list must not carry them by default."""
    for fmt in ("csv", "jsonl"):
        assert "ncmec" not in write(FULL, fmt)
        assert "ncmec" in write(FULL, fmt, with_provenance=True)
    assert json.loads(write(FULL[:1], "jsonl")) == {
        "signal_type": "pdq",
        "signal": P1,
        "quality": 100,
    }


def test_text_refuses_to_mix_signal_types() -> None:
    with pytest.raises(InvalidRequest) as caught:
        write([HashRecord("pdq", P1), HashRecord("sha256", S1)], "text")
    assert caught.value.code == "mixed_signal_types"


def test_writing_nothing() -> None:
    for fmt in FORMATS:
        assert write([], fmt) == ""
    assert write([], "csv", with_provenance=True).startswith("signal_type,signal,")


# --------------------------------------------------------------------------- text


def test_text_skips_comments_and_blank_lines_and_numbers_rejections() -> None:
    text = f"# exported 2024-01-01\n\n{P1}\n   \nnot-a-hash\n  # indented comment\n{P2[:-2]}\n"
    result = parse(text, "text", default_type=PDQ)
    assert [r.value for r in result.records] == [P1]
    assert rejected(result) == [
        (5, "A pdq hash is 64 hexadecimal digits; got 'not-a-hash'."),
        (7, f"A pdq hash is 64 hexadecimal digits; got {P2[:-2]!r}."),
    ]
    assert result.rejected[0].text == "not-a-hash"


def test_text_normalizes_case_and_whitespace() -> None:
    result = parse(f"  {P1.upper()}  \r\n", "text", default_type=PDQ)
    assert result.records == [HashRecord("pdq", P1)]


def test_text_guesses_the_type_by_length_when_none_is_given() -> None:
    result = parse(f"{P1}\n{M1}\nabc\n", "text")
    assert [(r.signal_type, r.value) for r in result.records] == [("pdq", P1), ("md5", M1)]
    assert rejected(result) == [(3, "Not a hash: 'abc'.")]


def test_text_with_a_default_type_does_not_guess() -> None:
    result = parse(f"{M1}\n{S1}\n", "text", default_type=SHA256)
    assert result.records == [HashRecord("sha256", S1)]
    assert rejected(result) == [(1, f"A sha256 hash is 64 hexadecimal digits; got {M1!r}.")]


def test_rejected_text_is_truncated() -> None:
    result = parse("x" * 1000, "text", default_type=MD5)
    assert len(result.rejected[0].text) == 200


def test_byte_order_mark_is_ignored() -> None:
    assert parse("\ufeff" + P1, "text", default_type=PDQ).records == [HashRecord("pdq", P1)]
    assert parse(f"\ufeffsignal_type,signal\npdq,{P1}", "csv").records == [HashRecord("pdq", P1)]


# --------------------------------------------------------------------------- csv


def test_csv_with_and_without_header() -> None:
    body = f"pdq,{P1}\nmd5,{M1.upper()}\n"
    expected = [HashRecord("pdq", P1), HashRecord("md5", M1)]
    assert parse(body, "csv").records == expected
    headed = parse("signal_type,signal\n" + body, "csv")
    assert headed.records == expected and headed.rejected == []


def test_csv_header_may_reorder_and_name_provenance_columns() -> None:
    text = f"Signal,Note,Signal_Type,Quality\n{P1},hello,PDQ,87\n{M1},,md5,\n"
    assert parse(text, "csv").records == [
        HashRecord("pdq", P1, 87, note="hello"),
        HashRecord("md5", M1),
    ]


def test_csv_reads_threatexchange_dataset_export() -> None:
    """``threatexchange dataset -P --csv`` names the hash column signal_str."""
    text = f"signal_type,signal_str,collab,category,tags\npdq,{P1},Sample Data,Adult,a b\n"
    result = parse(text, "csv")
    assert result.records == [HashRecord("pdq", P1, category="Adult")]
    assert result.ignored_columns == ["collab", "tags"]


def test_csv_extra_columns_need_a_header() -> None:
    result = parse(f"pdq,{P1},ncmec\n{P1}\n", "csv")
    assert result.records == []
    assert [n for n, _ in rejected(result)] == [1, 2]
    assert "without a header a CSV row is signal_type,signal" in result.rejected[0].reason
    assert "1 column;" in result.rejected[1].reason


def test_csv_row_width_must_match_the_header() -> None:
    result = parse(f"signal_type,signal,note\npdq,{P1}\n", "csv")
    assert rejected(result) == [(2, "The row has 2 columns but the header names 3.")]


def test_csv_header_without_a_hash_column_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse("signal_type,note\npdq,x\n", "csv")
    assert caught.value.code == "invalid_header"


def test_csv_header_naming_a_column_twice_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse(f"signal_type,signal,hash\npdq,{P1},{P1}\n", "csv")
    assert caught.value.code == "invalid_header"


def test_csv_header_only_counts_on_the_first_row() -> None:
    result = parse(f"pdq,{P1}\nsignal_type,signal\n", "csv")
    assert rejected(result) == [
        (
            2,
            "Unknown signal type 'signal_type'; known types: pdq, md5, sha256, vpdq, "
            "photodna, tmk.",
        )
    ]


def test_csv_rejections_unknown_type_alias_bad_quality() -> None:
    text = "\n".join(
        [
            "signal_type,signal,quality",
            f"sha-256,{S1},",  # 2: alias accepted
            f"sha1,{P1},",  # 3
            f"pdq,{P1},high",  # 4
            f"pdq,{P2},101",  # 5
            f"md5,{M1}0,",  # 6
            f",{P1},",  # 7: no type, no default
            "pdq,,",  # 8
        ]
    )
    result = parse(text, "csv")
    assert result.records == [HashRecord("sha256", S1)]
    assert rejected(result) == [
        (3, "Unknown signal type 'sha1'; known types: pdq, md5, sha256, vpdq, photodna, tmk."),
        (4, "PDQ quality must be a whole number from 0 to 100; got 'high'."),
        (5, "PDQ quality must be a whole number from 0 to 100; got 101."),
        (6, f"A md5 hash is 32 hexadecimal digits; got {M1 + '0'!r}."),
        (7, "The signal type is missing (pdq, md5 or sha256)."),
        (8, "The row has no hash."),
    ]


def test_csv_missing_type_falls_back_to_the_default() -> None:
    assert parse(f",{P1}\n", "csv", default_type=PDQ).records == [HashRecord("pdq", P1)]


def test_csv_comments_blank_lines_and_multiline_notes_keep_line_numbers() -> None:
    text = "\n".join(
        [
            '# exported by hand,"quote',  # 1: a quote in a comment opens nothing
            "signal_type,signal,note",  # 2: header after a comment
            "",  # 3
            f'pdq,{P1},"first',  # 4: a note spanning lines 4-6
            "",
            '# not a comment inside quotes"',
            "pdq,bad,",  # 7
        ]
    )
    result = parse(text, "csv")
    assert result.records == [HashRecord("pdq", P1, note="first\n\n# not a comment inside quotes")]
    assert [n for n, _ in rejected(result)] == [7]


# --------------------------------------------------------------------------- jsonl


def test_jsonl_fields_aliases_and_rejections() -> None:
    lines = [
        json.dumps({"signal_type": "pdq", "signal": P1, "quality": 90, "source_id": 1234}),
        json.dumps({"signal_type": "SHA-256", "hash": S1.upper(), "extra": [1]}),
        "{not json",  # 3
        "[1, 2]",  # 4
        json.dumps({"signal_type": "pdq", "signal": P2, "quality": 100.5}),  # 5
        json.dumps({"signal_type": "pdq", "signal": P2, "quality": "90"}),  # 6
        json.dumps({"signal_type": "pdq", "signal": P2, "quality": 101}),  # 7
        json.dumps({"signal_type": "pdq"}),  # 8
        json.dumps({"signal_type": "pdq", "signal": P1, "hash": P2}),  # 9
        json.dumps({"signal_type": "pdq", "signal": 5}),  # 10
        json.dumps({"signal_type": "pdq", "signal": P2, "note": 5}),  # 11
        json.dumps({"signal_type": "whatever", "signal": P2}),  # 12
        "",
        "# comment",
        json.dumps({"signal": M1}),  # 15: no type and no default
    ]
    result = parse("\n".join(lines), "jsonl")
    assert result.records == [
        HashRecord("pdq", P1, 90, source_id="1234"),
        HashRecord("sha256", S1),
    ]
    reasons = dict(rejected(result))
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15]
    assert reasons[3].startswith("This line is not valid JSON: ")
    assert reasons[4] == "Each line must be a JSON object; got a list."
    for n, got in ((5, "100.5"), (6, "'90'"), (7, "101")):
        assert reasons[n] == f"PDQ quality must be a whole number from 0 to 100; got {got}."
    assert "no hash" in reasons[8]
    assert "different hashes" in reasons[9]
    assert reasons[10] == "'signal' must be a string of hex digits; got a number."
    assert reasons[11] == "'note' must be a string; got a number."
    assert reasons[12].startswith("Unknown signal type 'whatever'")
    assert reasons[15] == "The signal type is missing (pdq, md5 or sha256)."


def test_jsonl_same_hash_under_two_keys_is_fine() -> None:
    line = json.dumps({"signal_type": "pdq", "signal": P1, "hash": P1.upper()})
    assert parse(line, "jsonl").records == [HashRecord("pdq", P1)]


# --------------------------------------------------------------------------- shared rules


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicates_are_counted_and_kept_once(fmt: str) -> None:
    records = [HashRecord("pdq", P1), HashRecord("pdq", P2)]
    text = write(records + records + [HashRecord("pdq", P1.upper())], fmt)
    result = parse(text, fmt, default_type=PDQ)
    assert result.records == records
    assert result.duplicates_in_file == 3


def test_same_value_under_two_types_is_not_a_duplicate() -> None:
    result = parse(f"pdq,{S1}\nsha256,{S1}\n", "csv")
    assert len(result.records) == 2 and result.duplicates_in_file == 0


def test_allowed_types_restrict_what_is_accepted() -> None:
    text = f"pdq,{P1}\nmd5,{M1}\nsha256,{S1}\n"
    result = parse(text, "csv", allowed_types={"PDQ", "sha-256"})
    assert [r.signal_type for r in result.records] == ["pdq", "sha256"]
    assert rejected(result) == [
        (2, "md5 hashes are not accepted here; accepted types: pdq, sha256.")
    ]


def test_unknown_format_is_refused() -> None:
    for call in (
        lambda: parse_hash_list([], "xml"),
        lambda: write_hash_list([], "xml", io.StringIO()),
    ):
        with pytest.raises(InvalidRequest) as caught:
            call()
        assert caught.value.code == "unknown_format"


def test_format_name_is_case_insensitive() -> None:
    assert parse(f"pdq,{P1}", "CSV").records == [HashRecord("pdq", P1)]


def test_empty_input() -> None:
    for fmt in FORMATS:
        result = parse_hash_list([], fmt)
        assert (result.records, result.rejected, result.duplicates_in_file) == ([], [], 0)


def test_invalid_hash_reasons_reuse_the_signal_messages() -> None:
    with pytest.raises(InvalidHash) as caught:
        PDQ.normalize("xyz")
    result = parse("xyz", "text", default_type=PDQ)
    assert result.rejected[0].reason == caught.value.message


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("first_line", "filename", "expected"),
    [
        ("anything", "list.csv", "csv"),
        ("anything", "LIST.CSV", "csv"),
        ("anything", "dir.v2/list.jsonl", "jsonl"),
        ("anything", "list.ndjson", "jsonl"),
        ("a,b", "list.txt", "text"),
        ('{"signal_type": "pdq"}', None, "jsonl"),
        ('\ufeff{"signal_type": "pdq"}', "export", "jsonl"),
        (f"pdq,{P1}", None, "csv"),
        ("signal_type,signal", "hashes.dat", "csv"),
        (P1, None, "text"),
        ("# a comment, with a comma", None, "text"),
        ("", None, "text"),
    ],
)
def test_detect_format(first_line: str, filename: str | None, expected: str) -> None:
    assert detect_format(first_line, filename) == expected


def test_canonical_lines_take_the_fast_path_and_equal_validated_records():
    lines = ["ab" * 32, "AB" * 32 + " ", "cd" * 32, "# comment", "zz"]
    parsed = parse_hash_list(lines, "text", default_type=PDQ)
    assert parsed.records == [HashRecord("pdq", "ab" * 32), HashRecord("pdq", "cd" * 32)]
    assert parsed.duplicates_in_file == 1
    assert [r.line_number for r in parsed.rejected] == [5]


def test_bulk_ids_are_distinct_ulids():
    from ulid import ULID

    from takedown.ids import new_ids

    ids = new_ids(1000)
    assert len(set(ids)) == 1000 and new_ids(0) == []
    assert all(len(i) == 26 and str(ULID.from_str(i)) == i for i in ids)
