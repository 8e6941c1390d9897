"""Matching media signals against banks: the PDQ Hamming index and its protocol."""

from takedown.matching.hamming import (
    PDQ_BITS,
    PDQ_BYTES,
    BruteForceHammingIndex,
    HammingIndex,
    SearchResult,
    bytes_to_hex,
    hex_to_bytes_array,
    stored_hex_to_bytes_array,
)
from takedown.matching.mih import MultiIndexHammingIndex

__all__ = [
    "PDQ_BITS",
    "PDQ_BYTES",
    "BruteForceHammingIndex",
    "HammingIndex",
    "MultiIndexHammingIndex",
    "SearchResult",
    "bytes_to_hex",
    "hex_to_bytes_array",
    "stored_hex_to_bytes_array",
]
