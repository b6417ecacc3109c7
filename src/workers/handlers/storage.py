"""Paths under the storage root: safe resolution, atomic writes, checksums.

Every path a payload names is relative to the storage root. `resolve` follows
symlinks and refuses anything that lands outside the root (a `..`, an absolute
path, a link pointing out) as a permanent error: no retry can make it legal.
Outputs are written to a temporary file beside their target and renamed into
place, so a reader never sees half a file and a retried attempt overwrites its
own output instead of leaving a second one.

A file-system error is reported with the path as the payload named it, never
the absolute path under the storage root (`os_failure`): the error is recorded
in the ledger, which clients and auditors read.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ledger import jobtypes

CHUNK = 1 << 16

# File-system errors that no retry can cure: the path itself is wrong for this file system.
_PERMANENT_ERRNOS = frozenset(
    {
        errno.ENAMETOOLONG,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.EINVAL,
        errno.EROFS,
    }
)


def os_failure(relative: str, exc: OSError) -> jobtypes.Permanent | jobtypes.Retryable:
    """`exc` on the payload's path `relative`, told without the storage root's absolute path.

    Permanent when the path cannot work (too long, not a directory, no access, ...),
    Retryable otherwise (a full disk, an I/O error, too many open files).
    """
    reason = exc.strerror or type(exc).__name__
    text = f"{reason} (path {relative!r} under the storage root)"
    if exc.errno in _PERMANENT_ERRNOS:
        return jobtypes.Permanent(text)
    return jobtypes.Retryable(text)


def resolve(root: Path, relative: str) -> Path:
    """`relative` under `root`, symlinks resolved; Permanent when it escapes the root."""
    if not relative or "\x00" in relative:
        raise jobtypes.Permanent(f"path {relative!r} is not a valid relative path")
    if PurePosixPath(relative).is_absolute() or Path(relative).is_absolute():
        raise jobtypes.Permanent(
            f"path {relative!r} is absolute; paths are relative to the storage root"
        )
    base = root.resolve()
    try:
        candidate = (base / relative).resolve()
    except OSError as exc:  # say, a name longer than the file system allows
        raise os_failure(relative, exc) from exc
    if not candidate.is_relative_to(base):
        raise jobtypes.Permanent(f"path {relative!r} escapes the storage root")
    return candidate


def existing_file(root: Path, relative: str) -> Path:
    """`resolve`, and the path must be a regular file; Permanent otherwise."""
    path = resolve(root, relative)
    try:
        is_file = path.is_file()
    except OSError as exc:
        raise os_failure(relative, exc) from exc
    if not is_file:
        raise jobtypes.Permanent(f"no file at {relative!r} under the storage root")
    return path


def relative_to_root(root: Path, path: Path) -> str:
    """The POSIX path of `path` relative to the storage root (what results report)."""
    return path.relative_to(root.resolve()).as_posix()


def output_path(root: Path, *parts: str) -> Path:
    """A path for an output under the root (its folder created), checked like any other."""
    path = resolve(root, "/".join(parts))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class AtomicFile:
    """A file that appears at `target` only when committed: written to a temporary file
    beside it, then flushed to disk and renamed over it. Each step is a plain blocking
    call, so async code runs them in a thread."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self._tmp: Path | None = None
        self._handle: BinaryIO | None = None

    def open(self) -> BinaryIO:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent
        )
        self._tmp = Path(name)
        self._handle = os.fdopen(fd, "wb")
        return self._handle

    def commit(self) -> None:
        assert self._handle is not None and self._tmp is not None, "commit before open"
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._tmp, self.target)
        self._tmp = None

    def discard(self) -> None:
        """Drop the temporary file (after a failure); the target is left as it was."""
        if self._handle is not None:
            self._handle.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


@contextlib.contextmanager
def atomic_writer(target: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes `target` only if the block completes (temp file + rename)."""
    output = AtomicFile(target)
    handle = output.open()
    try:
        yield handle
        output.commit()
    except BaseException:
        output.discard()
        raise


def sha256_file(path: Path) -> tuple[str, int]:
    """The file's SHA-256 (hex) and its size in bytes, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
