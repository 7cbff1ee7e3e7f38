"""Parsing of unit specifications: `3`, `0-15`, `1,4,9`, or mixes such as `0-3,8`."""

from __future__ import annotations


class UnitSpecError(ValueError):
    pass


def parse_units(spec: str, limit: int | None = None) -> list[int]:
    """Sorted unique unit indices named by `spec`; checked against `limit` when given."""
    units: set[int] = set()
    text = spec.strip()
    if not text:
        raise UnitSpecError("empty unit specification")
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo_s, hi_s = part.split("-", 1)
                lo, hi = int(lo_s), int(hi_s)
                if lo > hi:
                    raise UnitSpecError(f"unit range {part!r} runs backwards")
                units.update(range(lo, hi + 1))
            else:
                units.add(int(part))
        except ValueError as exc:
            if isinstance(exc, UnitSpecError):
                raise
            raise UnitSpecError(f"bad unit specification {spec!r}: use 3, 0-15 or 1,4,9") from None
    if min(units) < 0:
        raise UnitSpecError(f"negative unit in {spec!r}")
    if limit is not None and max(units) >= limit:
        raise UnitSpecError(f"unit {max(units)} out of range: the layer has {limit} units")
    return sorted(units)
