"""Safe writes: atomic, and never over anything keras_gen did not write.

An interrupted write never leaves a file that looks valid, and a write never
replaces what the user owns. keras_gen replaces only what it wrote itself: a
folder holding its marker file (preset folders, SavedModels, TFLite folders,
checkpoints), an empty folder, or a file that carries keras_gen's signature (PNGs,
JSON reports, models.config). Anything else needs `overwrite=True` (`--overwrite`),
and devices, FIFOs and sockets are never written through or replaced at all.
"""

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)

MARKER = ".keras_gen"
_MARKER_TEXT = "Written by keras_gen, which may replace this folder.\n"


class OverwriteError(ValueError):
    """An output path holds something keras_gen did not write."""


def sha256(path: str | os.PathLike) -> str:
    """The sha256 of a regular file; anything else (a device, a FIFO) is refused."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"{path} is not a regular file; refusing to read it")
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _kind(path: Path) -> str:
    """ "missing", "symbolic link", "file", "folder", or a special file's kind."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "device"),
        (stat.S_ISBLK, "device"),
    ):
        if test(mode):
            return name
    return "special file"


def _check_parent(path: Path) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OverwriteError(f"cannot write {path}: {parent} is not a folder")
            return


def _refuse(path: Path, what: str) -> None:
    raise OverwriteError(
        f"refusing to replace {path}: it is {what} that keras_gen did not write. "
        "Choose another output path, or pass --overwrite (overwrite=True) to replace it."
    )


def _claim(path, overwrite: bool, ours: Callable[[Path, str], bool]) -> Path:
    """`path` if keras_gen may write there: missing, `ours`, or `overwrite`.

    `ours(path, kind)` says whether keras_gen wrote what is there. Special files
    are refused even with `overwrite`.
    """
    path = Path(path)
    _check_parent(path)
    kind = _kind(path)
    if kind not in ("missing", "file", "folder", "symbolic link"):
        raise OverwriteError(
            f"refusing {path}: it is a {kind}; keras_gen never writes through or "
            "replaces one"
        )
    if kind != "missing" and not overwrite and not ours(path, kind):
        _refuse(path, f"a {kind}")
    return path


def claim_folder(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check that `path` may become a folder keras_gen writes; raise OverwriteError if not.

    keras_gen's own folders hold its marker; an empty folder holds nothing to lose.
    """
    return _claim(
        path,
        overwrite,
        lambda found, kind: (
            kind == "folder" and (is_marked(found) or not any(found.iterdir()))
        ),
    )


def claim_file(
    path: str | os.PathLike,
    signed: Callable[[bytes], bool],
    overwrite: bool = False,
) -> Path:
    """Check that `path` may become a file keras_gen writes; raise OverwriteError if not.

    `signed` tells, from the file's first 4 KiB, whether keras_gen wrote it.
    """
    return _claim(
        path, overwrite, lambda found, kind: kind == "file" and signed(_head(found))
    )


def _head(path: Path) -> bytes:
    with open(path, "rb") as file:
        return file.read(4096)


def is_marked(folder: Path) -> bool:
    """Whether keras_gen wrote this folder (it holds keras_gen's marker file)."""
    marker = folder / MARKER
    return _kind(marker) == "file"


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike,
    signed: Callable[[bytes], bool] | None = None,
    overwrite: bool = False,
) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds.

    With `signed` (see `claim_file`), what is at `path` is checked before and again
    just before it is replaced; without it, `path` must be a regular file or missing
    (keras_gen's own files inside its own folders).
    """

    def claim():
        claim_file(path, signed or (lambda head: True), overwrite)

    path = Path(path)
    claim()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keras insists on the ".weights.h5" ending, so the temporary file keeps it.
    suffix = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    fd, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix
    )
    os.close(fd)
    # mkstemp makes the file private; keep the usual mode.
    os.chmod(temporary, 0o666 & ~_UMASK)
    try:
        yield Path(temporary)
        claim()
        if _kind(path) == "folder":  # only with overwrite: a folder becomes a file
            shutil.rmtree(path)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(
    path: str | os.PathLike,
    text: str,
    signed: Callable[[bytes], bool] | None = None,
    overwrite: bool = False,
) -> None:
    """Write a text file atomically (see `atomic_path` for `signed` and `overwrite`)."""
    with atomic_path(path, signed, overwrite) as temporary:
        temporary.write_text(text)


@contextlib.contextmanager
def atomic_directory(
    path: str | os.PathLike, overwrite: bool = False
) -> Iterator[Path]:
    """Yield a fresh folder beside `path`; it replaces `path` whole only if the block succeeds.

    The folder gets keras_gen's marker, so a later write may replace it; what is at
    `path` is checked (`claim_folder`) before and again just before it is replaced.
    """
    path = Path(path)
    claim_folder(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    os.chmod(temporary, 0o777 & ~_UMASK)
    try:
        yield temporary
        (temporary / MARKER).write_text(_MARKER_TEXT)
        claim_folder(path, overwrite)
        if _kind(path) != "missing":
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            os.replace(path, old / path.name)
            os.replace(temporary, path)
            shutil.rmtree(old)
        else:
            os.replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)


def mark(folder: str | os.PathLike) -> None:
    """Put keras_gen's marker in a folder it created in place (not via atomic_directory)."""
    marker = Path(folder) / MARKER
    if not is_marked(Path(folder)):
        write_text(marker, _MARKER_TEXT)


def json_signed(head: bytes) -> bool:
    """Whether a JSON file is one keras_gen wrote (its first key says so)."""
    return head.lstrip().startswith(b'{\n  "written_by": "keras_gen"')
