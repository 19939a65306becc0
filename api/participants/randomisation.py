"""Permuted-block randomisation stratified by site, reproducible from the study's seed.

Block ``b`` of stratum ``s`` is a shuffle of the arms repeated by their allocation ratio, times a
multiplier of 1 or 2 (varying block sizes keep the next allocation hard to guess at a site). Both
the multiplier and the shuffle come from a generator seeded with ``"<seed>|<site code>|<b>"``, so
the whole sequence can be rebuilt from the seed, the site codes and the arms.

Examples
--------
>>> arms = [("group", 1), ("online", 1), ("usual", 1)]
>>> seq = [arm_at("s33d", "north", arms, i)[0] for i in range(12)]
>>> sorted(seq[:block_at("s33d", "north", arms, 0)[2]]) in (["group", "online", "usual"],
...     ["group", "group", "online", "online", "usual", "usual"])
True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache

METHOD = "permuted blocks (block size 1x or 2x the ratio sum), stratified by site"


@lru_cache(maxsize=4096)
def _block(seed: str, stratum: str, arms: tuple[tuple[str, int], ...], number: int) -> tuple[str, ...]:
    rng = random.Random(f"{seed}|{stratum}|{number}")
    unit = [code for code, ratio in arms for _ in range(ratio)]
    block = unit * rng.choice((1, 2))
    rng.shuffle(block)
    return tuple(block)


def block_at(seed: str, stratum: str, arms: Sequence[tuple[str, int]], index: int) -> tuple[int, int, int]:
    """(block number, position in block, block size) of the ``index``-th allocation (0-based)."""
    key = tuple(sorted((str(c), int(r)) for c, r in arms))
    number, start = 0, 0
    while True:
        size = len(_block(seed, stratum, key, number))
        if index < start + size:
            return number, index - start, size
        start += size
        number += 1


def arm_at(seed: str, stratum: str, arms: Sequence[tuple[str, int]], index: int) -> tuple[str, int, int]:
    """(arm code, block number, block size) of the ``index``-th allocation of a stratum.

    Parameters
    ----------
    seed : str
        The study's randomisation seed.
    stratum : str
        The stratum key (the site code).
    arms : sequence of (arm code, allocation ratio)
        Order does not matter; arms are sorted by code.
    index : int
        0-based position in the stratum's sequence.
    """
    key = tuple(sorted((str(c), int(r)) for c, r in arms))
    number, pos, size = block_at(seed, stratum, key, index)
    return _block(seed, stratum, key, number)[pos], number, size
