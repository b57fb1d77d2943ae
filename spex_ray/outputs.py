"""Where a run's files go: a local directory, or a URI (s3://, gs://, file://, ...) opened
through pyarrow's filesystems; and the lock that keeps one run at a time writing there.

A local output is written in place: every finished row is fsync'd to its journal. A URI
output is staged: the run journals into a local temporary directory (fsync'd as locally),
copies the files to the URI every SYNC_INTERVAL_S seconds while rows arrive and once more at
the end, and a resumed run starts from the copy at the URI. A crash of the driver therefore
loses at most the last SYNC_INTERVAL_S seconds of rows at the URI.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO

import pyarrow.fs as pafs

log = logging.getLogger(__name__)

SYNC_INTERVAL_S = 30.0
LOCK_FILE = ".lock"


class OutputError(ValueError):
    """An output directory that cannot be used as asked; the message says what to do."""


def is_uri(output: str | Path) -> bool:
    """Whether `output` names a filesystem URI (scheme://...) rather than a local path."""
    return "://" in str(output)


class OutputLocation:
    """A run's output: `dir` is the local directory the run writes (the output itself, or the
    staging copy of a URI); `sync()` brings a URI up to date with it."""

    def __init__(self, output: str | Path) -> None:
        self.name = str(output)
        self.remote: tuple[pafs.FileSystem, str] | None = None
        if is_uri(output):
            try:
                self.remote = pafs.FileSystem.from_uri(self.name)
            except (ValueError, OSError) as exc:  # pyarrow: ArrowInvalid, unknown scheme
                raise OutputError(f"run.output {self.name!r}: {exc}") from exc
            self.dir = Path(tempfile.mkdtemp(prefix="spex_ray_output_"))
        else:
            self.dir = Path(output)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise unusable_output(self.name, exc) from None
        self._synced = 0.0
        self._failed = False  # the last forced copy to the URI failed: keep the staging files

    @property
    def path(self) -> Path | str:
        """Where the files end up: the local Path, or the URI."""
        return self.name if self.remote else self.dir

    def fetch(self, names: tuple[str, ...]) -> None:
        """Copy the named files that exist at the URI into the staging directory."""
        if self.remote is None:
            return
        fs, base = self.remote
        for name in names:
            if fs.get_file_info(f"{base}/{name}").type == pafs.FileType.File:
                with fs.open_input_stream(f"{base}/{name}") as src, open(self.dir / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)

    def remove(self, names: tuple[str, ...]) -> None:
        """Delete the named files of the output (at the URI too) where they exist."""
        for name in names:
            (self.dir / name).unlink(missing_ok=True)
        if self.remote is not None:
            fs, base = self.remote
            for name in names:
                if fs.get_file_info(f"{base}/{name}").type == pafs.FileType.File:
                    fs.delete_file(f"{base}/{name}")

    def sync(self, force: bool = True) -> None:
        """Copy every file of the staging directory to the URI (nothing to do for a local
        output). Forced: a failure is an OutputError naming where the files are kept.
        Unforced (after each row): only when the last copy is SYNC_INTERVAL_S old, and a
        failure is a warning (the next copy tries again)."""
        if self.remote is None or (not force and time.monotonic() - self._synced < SYNC_INTERVAL_S):
            return
        try:
            self._copy_up()
        except OSError as exc:
            self._synced = time.monotonic()
            message = f"could not copy the run to {self.name} ({exc}); its files are in {self.dir}"
            if force:
                self._failed = True
                raise OutputError(message) from exc
            log.warning("%s", message)
        else:
            self._synced = time.monotonic()
            self._failed = False

    def _copy_up(self) -> None:
        fs, base = self.remote
        fs.create_dir(base, recursive=True)
        for path in sorted(self.dir.iterdir()):
            if path.is_file() and path.name != LOCK_FILE:
                with open(path, "rb") as src, fs.open_output_stream(f"{base}/{path.name}") as dst:
                    shutil.copyfileobj(src, dst)

    def cleanup(self, keep_unsynced: bool = True) -> None:
        """Remove the staging directory of a URI output, unless its last copy failed and
        `keep_unsynced` (then it holds the only copy of the run's rows)."""
        if self.remote is not None and not (self._failed and keep_unsynced):
            shutil.rmtree(self.dir, ignore_errors=True)


def unusable_output(name: str, exc: OSError) -> OutputError:
    """The one-line OutputError of an output directory that cannot be created or written."""
    if isinstance(exc, FileExistsError | NotADirectoryError):
        path = Path(exc.filename or name)
        blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        reason = f"{blocking} is a file, not a directory"
    else:
        reason = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return OutputError(f"run.output {name!r} cannot be used ({reason}); give another --output")


class RunLock:
    """An exclusive lock on an output (fcntl.flock on <dir>/.lock holding the owner's pid),
    released by `release()` or when the process exits. A URI output is locked on this
    machine only (a lock file keyed by the URI under the temp directory): two machines
    writing one URI are not detected."""

    def __init__(self, location: OutputLocation) -> None:
        self.path = _lock_path(location)
        try:
            self._handle: IO[str] | None = open(self.path, "a+")  # noqa: SIM115 - held until release
        except OSError as exc:
            raise unusable_output(location.name, exc) from None
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.seek(0)
            owner = self._handle.read().strip() or "unknown"
            self._handle.close()
            raise OutputError(
                f"another run is writing to {location.name} (pid {owner}); "
                "wait for it to finish or give another --output"
            ) from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(str(os.getpid()))
        self._handle.flush()

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _lock_path(location: OutputLocation) -> Path:
    if location.remote is None:
        return location.dir / LOCK_FILE
    key = hashlib.sha256(location.name.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"spex_ray_output_{key}.lock"
