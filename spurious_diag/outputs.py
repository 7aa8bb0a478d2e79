"""Where results go: the ``--out`` directory policy and atomic writes.

Every command that writes takes ``--out DIR`` and refuses a non-empty DIR
unless told to overwrite. Files are written to a temporary name in the same
directory and renamed into place, so a killed run leaves the old file or the
new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

from .errors import OutputDirError

__all__ = ["check_out_not_input", "check_out_dir", "prepare_out_dir", "output_dir", "atomic_write_text", "atomic_write_json", "atomic_path", "staged_dir"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(path: str, is_dir: bool) -> None:
    """mkstemp/mkdtemp create 0600/0700; give the final output the umask's usual mode."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def _check_writable(path: str) -> None:
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputDirError("output directory is not writable", path)


def check_out_not_input(out: str, inputs: "list[str]") -> None:
    """Refuse an output directory that is, holds, or lies inside one of the inputs.

    With ``--overwrite`` such a directory would be emptied: an audit must never
    write into (let alone delete) the checkpoints it reads.
    """
    out_abs = os.path.realpath(out)
    for inp in inputs:
        inp_abs = os.path.realpath(inp)
        inside = os.path.commonpath([out_abs, inp_abs])
        if inside in (out_abs, inp_abs):
            raise OutputDirError(f"output directory overlaps the input {inp}: choose another --out", out)


def check_out_dir(path: str, overwrite: bool = False) -> None:
    """Refuse ``path`` as an output directory without touching it: it is a file, or it is not
    empty and ``overwrite`` is False. (The ranks of a distributed command check before the work;
    only rank 0 then creates and writes.)

    Raises:
        OutputDirError: as :func:`prepare_out_dir` would.
    """
    path = os.fspath(path)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise OutputDirError("exists and is not a directory", path)
        if os.listdir(path) and not overwrite:
            raise OutputDirError("output directory is not empty (pass --overwrite to replace it)", path)


def prepare_out_dir(path: str, overwrite: bool = False) -> str:
    """Create ``path`` (and parents) or accept it when empty; with ``overwrite``, empty it first.

    Raises:
        OutputDirError: ``path`` is a file, is not empty and ``overwrite`` is False,
            or cannot be created / written.
    """
    path = os.fspath(path)
    check_out_dir(path, overwrite)
    if os.path.exists(path):
        if os.listdir(path):
            _check_writable(path)
            for entry in os.listdir(path):
                full = os.path.join(path, entry)
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
                else:
                    os.remove(full)
        _check_writable(path)
        return path
    try:
        os.makedirs(path)
    except OSError as exc:
        raise OutputDirError(f"cannot create output directory ({exc.strerror})", path) from None
    return path


@contextmanager
def output_dir(path: str, overwrite: bool = False) -> Iterator[str]:
    """:func:`prepare_out_dir` for the span of a command: if the command fails and the directory
    was created here and is still empty, it is removed again (no empty ``--out`` left behind).
    Anything written into it is kept."""
    created = not os.path.exists(path)
    prepared = prepare_out_dir(path, overwrite=overwrite)
    try:
        yield prepared
    except BaseException:
        if created and os.path.isdir(prepared) and not os.listdir(prepared):
            os.rmdir(prepared)
        raise


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(os.path.join(d, "x.txt")) as tmp:
    ...     _ = open(tmp, "w").write("hi")
    >>> open(os.path.join(d, "x.txt")).read()
    'hi'
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        _default_mode(tmp, is_dir=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


@contextmanager
def staged_dir(path: str, overwrite: bool = False) -> Iterator[str]:
    """Build a directory under a temporary name, then move it to ``path`` in one rename.

    For outputs made of many files (a converted model): a crash leaves no half-written
    ``path``. ``path`` must not exist or be empty, unless ``overwrite``.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise OutputDirError("exists and is not a directory", path)
        if os.listdir(path) and not overwrite:
            raise OutputDirError("output directory is not empty (pass --overwrite to replace it)", path)
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=parent)
    except OSError as exc:
        raise OutputDirError(f"cannot create output directory ({exc.strerror})", path) from None
    try:
        yield staging
        _default_mode(staging, is_dir=True)
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
