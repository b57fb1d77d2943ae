"""Deterministic seeds for the search tree.

Child k of node n is sampled with child_seed(query_seed, n, k). A speculative child is
therefore the very request the primary search would issue later (DESIGN.md, "speculation
is lossless"), whatever order the requests run in.
"""

from __future__ import annotations

import hashlib

_SEED_BITS = 63


def child_seed(query_seed: int, node_id: str, k: int) -> int:
    """A 63-bit seed fixed by (query seed, node id, child index)."""
    digest = hashlib.blake2b(f"{query_seed}/{node_id}/{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _SEED_BITS)
