"""Files replaced whole, and a cheap way to notice that one changed.

Contract:
- ``replace_file`` writes a temporary file in the target's folder (one file system, so the
  rename is atomic, rename(2)), fsyncs it, renames it over the target, then fsyncs the folder
  so the rename itself survives a power loss. After a crash a reader finds the old content or
  the new, never a mix. On failure the temporary file is removed and the target is untouched.
- The temporary file is private from its creation (``mkstemp``: 0600) and gets ``mode`` before
  any byte is written, so the content is never readable by others, not even for a moment.
- Run as root, the new file keeps the owner of the file it replaces, or takes the owner of its
  folder: a ``cgw`` command run with sudo must not leave a file the daemon's user cannot read.
- ``stamp`` is one ``stat``: inode, modification time (ns) and size. A file replaced by
  ``replace_file`` (or by an editor that renames) gets a new inode, so two changes within one
  tick of the file system's clock are still told apart.
"""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import NamedTuple


class FileStamp(NamedTuple):
    """Which version of a file is on disk."""

    inode: int
    mtime_ns: int
    size: int


def stamp(path: Path) -> FileStamp | None:
    """The file's stamp, or None if there is no file at ``path``."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return FileStamp(st.st_ino, st.st_mtime_ns, st.st_size)


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> FileStamp:
    """Replace ``path`` atomically with ``data``; returns the new file's stamp.

    Missing folders are made with mode 0700. Raises ``OSError``.
    """
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, mode)
            if os.geteuid() == 0:
                owner = path.stat() if path.exists() else folder.stat()
                os.fchown(fd, owner.st_uid, owner.st_gid)
            rest = memoryview(data)
            while rest:  # a short write (a full disk) returns a count, not an error
                rest = rest[os.write(fd, rest) :]
            os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    folder_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(folder_fd)  # make the rename itself durable
    finally:
        os.close(folder_fd)
    return FileStamp(st.st_ino, st.st_mtime_ns, st.st_size)
