"""A record that is not a document, and why: what every format reader yields instead of a `Doc`."""

from __future__ import annotations

from typing import NamedTuple


class Skip(NamedTuple):
    reason: str  # e.g. "skip_request", "truncated_record", "bad_json_line"
