"""A fixed tuning / held-out split of a shared labelled set, the same on every machine.

In: the rows of a labelled set (a list). Out: (tuning, held_out), each keeping the rows'
order. A row's half is decided by its position and a seed alone (`random.Random(seed)`
shuffles the positions; the first half of them is tuning), so adding a bench or reordering
code never moves a row between halves. Rules and normalisations are tuned on `tuning` only;
benches report `held_out` (and may print `tuning` beside it, labelled as such).

    from splits import split, SEED
    tune, held = split(rows)            # 50/50 with SEED
"""

from __future__ import annotations

import random

SEED = 20261129  # fixed once; changing it re-draws every split (and the published figures)


def split(rows: list, seed: int = SEED, held_out_share: float = 0.5) -> tuple[list, list]:
    """(tuning, held_out): a seeded shuffle of positions, the first `1 - held_out_share` tuning."""
    if not 0.0 < held_out_share < 1.0:
        raise ValueError(f"held_out_share must be in (0, 1), got {held_out_share}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_tune = len(rows) - round(len(rows) * held_out_share)
    tune = sorted(order[:n_tune])
    held = sorted(order[n_tune:])
    return [rows[i] for i in tune], [rows[i] for i in held]


def part(rows: list, which: str, seed: int = SEED) -> list:
    """One half by name: "tuning", "held-out", or "all" (every row)."""
    if which == "all":
        return list(rows)
    tune, held = split(rows, seed)
    if which == "tuning":
        return tune
    if which == "held-out":
        return held
    raise ValueError(f"split must be tuning, held-out or all, got {which!r}")
