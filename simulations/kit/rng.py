"""Seeded, independent random streams.

A model draws arrivals, latencies, failures and jitter from *separate* streams derived
from one seed and a name, so that changing how often one stream is used (say, turning
jitter on) does not shift the others: comparisons between variants stay fair.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


def _derive(seed: int, name: str) -> int:
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class RandomStreams:
    """Named random streams derived from one ``seed``; the same name gives the same stream."""

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.seed = seed

    def stream(self, name: str) -> random.Random:
        """A :class:`random.Random` for ``name`` (what ``patterns`` objects accept)."""
        return random.Random(_derive(self.seed, name))

    def numpy(self, name: str) -> np.random.Generator:
        """A NumPy generator for ``name``, for vectorised draws."""
        return np.random.default_rng(_derive(self.seed, name))

    def __repr__(self) -> str:
        return f"RandomStreams(seed={self.seed!r})"
