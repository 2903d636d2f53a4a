"""Safe output files and bundled resources.

Outputs are written to a temporary file in the target folder and renamed into
place, so a failed run leaves no partial file; an existing output is only
replaced when asked (``force``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from markov_migration.errors import InputError

_PACKAGE = Path(__file__).resolve().parent


def check_output(path: str | Path, force: bool = False) -> Path:
    """Refuse an output path that exists (unless ``force``) or whose folder is missing."""
    path = Path(path)
    if path.exists() and not force:
        raise InputError("output exists; use --force to overwrite it", path=path)
    if path.is_dir():
        raise InputError("output is a directory", path=path)
    if not path.parent.exists():
        raise InputError(f"output folder '{path.parent}' does not exist", path=path)
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``path``, on failure delete it.

    Examples
    --------
    >>> with atomic_output("out.csv", force=True) as tmp:  # doctest: +SKIP
    ...     frame.to_csv(tmp)
    """
    path = check_output(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp makes 0600; give the usual 0666 & ~umask
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def models_dir() -> Path:
    """Folder of the bundled model files (``models/`` of the source tree or the wheel)."""
    source = _PACKAGE.parent / "models"
    if source.is_dir():
        return source
    return _PACKAGE / "_bundled" / "models"


def resolve_model(name_or_path: str | Path) -> Path:
    """A model file path, or the name of a bundled model (e.g. ``migration5``)."""
    p = Path(name_or_path)
    if p.exists() or p.suffix == ".toml" or len(p.parts) > 1:
        return p
    bundled = models_dir() / f"{name_or_path}.toml"
    return bundled if bundled.exists() else p
