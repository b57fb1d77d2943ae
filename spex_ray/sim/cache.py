"""The simulated engine's prefix cache: a hash chain over token blocks with LRU eviction.

Like vLLM's block hashing (and SGLang's radix tree at page granularity), a sequence of
token ids is cut into blocks of `block_size`; block i is keyed by hash((key of block i-1,
tokens of block i)), so a key stands for the whole prefix up to its block. A lookup walks
the chain until the first missing key; only full blocks are cached.

Eviction is least-recently-used. A touch refreshes a chain from its last block back to the
first, so a prefix is always at least as recent as any extension of it and LRU evicts
leaves before the prefixes they hang from (no unreachable blocks are kept).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence


class PrefixCache:
    """Cached token prefixes, bounded to `capacity_tokens` (rounded down to whole blocks)."""

    def __init__(self, capacity_tokens: int, block_size: int = 16) -> None:
        if block_size < 1:
            raise ValueError("block_size must be >= 1")
        self.block_size = block_size
        self.capacity_tokens = max(0, int(capacity_tokens))
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self.hit_tokens = 0  # totals over match(touch=True) calls
        self.lookup_tokens = 0

    def __len__(self) -> int:
        """Cached tokens (whole blocks)."""
        return len(self._blocks) * self.block_size

    def _chain(self, tokens: Sequence[int]) -> Iterator[int]:
        key = 0
        size = self.block_size
        for start in range(0, len(tokens) - size + 1, size):
            key = hash((key, tuple(tokens[start : start + size])))
            yield key

    def _touch(self, keys: list[int]) -> None:
        for key in reversed(keys):  # the first block ends up the most recent
            self._blocks[key] = None
            self._blocks.move_to_end(key)

    def match(self, tokens: Sequence[int], touch: bool = True) -> int:
        """How many leading tokens of `tokens` are cached (a multiple of block_size).

        With touch, the matched blocks become most recently used and the hit is counted.
        """
        keys = []
        for key in self._chain(tokens):
            if key not in self._blocks:
                break
            keys.append(key)
        if touch:
            self._touch(keys)
            self.hit_tokens += len(keys) * self.block_size
            self.lookup_tokens += len(tokens)
        return len(keys) * self.block_size

    def insert(self, tokens: Sequence[int]) -> None:
        """Cache every full block of `tokens` (as most recently used), then evict to capacity."""
        self._touch(list(self._chain(tokens)))
        self.resize(self.capacity_tokens)

    def resize(self, capacity_tokens: int) -> None:
        """Set the capacity and evict least recently used blocks beyond it."""
        self.capacity_tokens = max(0, int(capacity_tokens))
        limit = self.capacity_tokens // self.block_size
        while len(self._blocks) > limit:
            self._blocks.popitem(last=False)

    def clear(self) -> None:
        self._blocks.clear()

    @property
    def hit_rate(self) -> float:
        """Fraction of looked-up prompt tokens found in the cache."""
        return self.hit_tokens / self.lookup_tokens if self.lookup_tokens else 0.0
