"""Reading a named dataset from the Hugging Face hub with the `datasets` library (cached).

The hub is probed first (one TCP connect): when it cannot be reached, `datasets` runs in its
offline mode, so a cached copy still loads and a missing one fails at once instead of after
the library's retries. Every failure is a :class:`DatasetUnavailable` that says what to
download and where to put it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from spex_ray.tasks.catalog import DATA_ENV, NamedDataset

HUB_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 3.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_NO_HUB = "the hub cannot be reached from this machine and the `datasets` cache has no copy"


class DatasetUnavailable(FileNotFoundError):
    """A named dataset is neither on this machine nor loadable from the hub."""


def load_hub_rows(spec: NamedDataset, limit: int | None, offset: int) -> list[dict[str, Any]]:
    """Rows offset..offset+limit (limit None: to the end) of `spec`'s hub copy."""
    try:
        import datasets
    except ImportError as exc:
        raise unavailable(spec, "the `datasets` package is not installed (pip install datasets)") from exc
    with _offline_unless_reachable() as forced_offline:
        try:
            table = datasets.load_dataset(spec.hub_id, spec.hub_config, split=spec.split)
        except Exception as exc:  # noqa: BLE001 - any failure to fetch means: get the file by hand
            reason = _NO_HUB if forced_offline else _first_line(exc)
            raise unavailable(spec, reason) from exc
    end = len(table) if limit is None else min(len(table), offset + limit)
    return table.select(range(offset, end)).to_list() if offset < end else []


def unavailable(spec: NamedDataset, reason: str) -> DatasetUnavailable:
    """The error for a named dataset that could not be loaded: why, what to download, where to."""
    looked = ", ".join(str(path) for path in spec.local_candidates())
    return DatasetUnavailable(
        f"dataset {spec.name!r} is not on this machine (looked for {looked}) and could not be "
        f"loaded from the Hugging Face hub {spec.hub_id!r}: {reason}. On a machine with internet "
        f"run: {spec.download_command()}, then put {spec.file} in ${DATA_ENV} or ./data"
    )


def hub_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub endpoint ($HF_ENDPOINT) opens within `timeout_s`.

    Behind a proxy (HTTPS_PROXY, ALL_PROXY) the direct probe says nothing, so it answers True.
    """
    if any(os.environ.get(name) for name in _PROXY_VARS):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or HUB_ENDPOINT)
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline_unless_reachable() -> Iterator[bool]:
    """Run the body in `datasets`' offline mode (cache only) when the hub cannot be reached;
    yields whether it switched offline mode on."""
    import datasets
    import huggingface_hub.constants as hub_constants

    if datasets.config.HF_HUB_OFFLINE or hub_reachable():
        yield False
        return
    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield True
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
