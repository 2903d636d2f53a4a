"""Safe output files and bundled resources.

Every output is written to a temporary file in its target folder and renamed into
place, so a failed or interrupted run leaves no partial file; an existing output is
only replaced when asked (``force``).

Within an :func:`output_transaction` (the command line opens one around each command)
the renames are deferred to the end of the command and done together, so a run's
outputs are all from that run, and a run that fails or is interrupted leaves neither
new files nor temporary ones, and every existing output byte-identical.

Outputs are checked before any work (:func:`check_output`): not one of the command's
inputs (:func:`register_inputs`), not a folder, device or other non-regular file, in a
folder that exists and can be written. A lock file beside each output
(``.NAME.lock``, holding the writer's process id) keeps two runs from writing the
same output at once, ``--force`` or not.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from markov_migration.errors import InputError

_PACKAGE = Path(__file__).resolve().parent

#: Inputs of the running command: an output that resolves to one of them is refused.
_INPUTS: list[Path] = []
#: The open output transaction, if any: pending (temporary, final) renames and locks.
_TRANSACTION: list[_Transaction] = []


def register_inputs(paths: Iterable[str | Path | None]) -> None:
    """Record files the running command reads, so that no output can replace them."""
    for p in paths:
        if p is None:
            continue
        path = Path(p)
        if path.exists():
            _INPUTS.append(path)


def clear_inputs() -> None:
    """Forget the registered inputs (the command line does this after each command)."""
    _INPUTS.clear()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _probe_folder(folder: Path, path: Path) -> None:
    """Refuse a folder where no file can be created (read-only, /proc, no permission)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mm-probe.", dir=folder)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise InputError(f"cannot write in folder '{folder}' ({reason})", path=path) from None
    os.close(fd)
    os.unlink(tmp)


def check_output(path: str | Path, force: bool = False) -> Path:
    """Check an output path before any work is done; return it.

    Refused (:class:`~markov_migration.errors.InputError`): a path that is one of the
    command's inputs, a folder or another non-regular file (device, pipe, socket; also
    with ``force``), an existing file without ``force``, a folder that does not exist,
    lies under a file or cannot be written.
    """
    path = Path(path)
    for inp in _INPUTS:
        if _same_file(path, inp):
            raise InputError(
                "output is one of this command's inputs; choose another path", path=path
            )
    if path.is_dir():
        raise InputError("output is a directory", path=path)
    if path.exists() or path.is_symlink():
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        if not stat.S_ISREG(mode):
            raise InputError(
                "output exists and is not a regular file; refusing to replace it", path=path
            )
        if not force:
            raise InputError("output exists; use --force to overwrite it", path=path)
    parent = path.parent
    if not parent.exists():
        for up in parent.parents:
            if up.exists() and not up.is_dir():
                raise InputError(f"output folder '{parent}' lies under a file ('{up}')", path=path)
        raise InputError(f"output folder '{parent}' does not exist", path=path)
    if not parent.is_dir():
        raise InputError(f"output folder '{parent}' is not a folder", path=path)
    _probe_folder(parent, path)
    return path


def _lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire_lock(path: Path) -> Path:
    """Create ``.NAME.lock`` exclusively; refuse when another live run holds it."""
    lock = _lock_path(path)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or "0")
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _pid_alive(pid):
                raise InputError(
                    f"another markov-migration run (process {pid}) is writing this output",
                    path=path,
                ) from None
            with contextlib.suppress(OSError):  # a stale lock of a run that died
                lock.unlink()
            continue
        except OSError as err:
            raise _write_error(path, err) from None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    raise InputError("could not lock the output", path=path)


def _write_error(path: Path, err: OSError) -> InputError:
    if err.errno == errno.ENOSPC:
        return InputError("cannot write: no space left on the device", path=path)
    return InputError(f"cannot write ({err.strerror or type(err).__name__})", path=path)


def _finish_mode(tmp_path: Path) -> None:
    if tmp_path.is_file():  # mkstemp makes 0600; give the usual 0666 & ~umask
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)


def _place(tmp_path: Path, path: Path, force: bool) -> None:
    """Rename into place: with ``force`` replace, else create exclusively (never clobber)."""
    if force:
        os.replace(tmp_path, path)
        return
    try:
        os.link(tmp_path, path)  # fails if a file appeared meanwhile
    except FileExistsError:
        raise InputError(
            "output appeared while this run was working (another run?); not replaced",
            path=path,
        ) from None
    except OSError:  # file systems without hard links: best effort
        if path.exists():
            raise InputError(
                "output appeared while this run was working; not replaced", path=path
            ) from None
        os.replace(tmp_path, path)
        return
    os.unlink(tmp_path)


class _Transaction:
    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path, bool]] = []
        self.locks: list[Path] = []
        self.targets: set[Path] = set()

    def commit(self) -> None:
        for _tmp, path, force in self.pending:  # re-check just before placing anything
            if not force and path.exists():
                raise InputError(
                    "output appeared while this run was working; not replaced", path=path
                )
        for tmp, path, force in self.pending:
            _place(tmp, path, force)
        self.pending.clear()

    def rollback(self) -> None:
        for tmp, _path, _force in self.pending:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self.pending.clear()

    def release(self) -> None:
        for lock in self.locks:
            with contextlib.suppress(OSError):
                lock.unlink()
        self.locks.clear()


@contextlib.contextmanager
def output_transaction() -> Iterator[None]:
    """Defer every :func:`atomic_output` rename inside to the end, and do them together.

    On an exception (bad input, ``KeyboardInterrupt``, SIGTERM turned into an
    exception) every temporary file is removed and nothing is placed.
    """
    tx = _Transaction()
    _TRANSACTION.append(tx)
    try:
        yield
        tx.commit()
    finally:
        tx.rollback()
        tx.release()
        _TRANSACTION.remove(tx)


@contextlib.contextmanager
def atomic_output(path: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``path``, on failure delete it.

    Inside an :func:`output_transaction` the rename waits for the transaction's end.
    Write errors (a full disk, a vanished folder) become one-line
    :class:`~markov_migration.errors.InputError` s and leave nothing behind.

    Examples
    --------
    >>> with atomic_output("out.csv", force=True) as tmp:  # doctest: +SKIP
    ...     frame.to_csv(tmp)
    """
    path = check_output(path, force)
    tx = _TRANSACTION[-1] if _TRANSACTION else None
    if tx is not None and path in tx.targets:
        raise InputError("this run writes the same output twice", path=path)
    lock = _acquire_lock(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        lock.unlink(missing_ok=True)
        raise _write_error(path, err) from None
    os.close(fd)
    tmp_path = Path(tmp)
    placed = False
    try:
        try:
            yield tmp_path
            _finish_mode(tmp_path)
        except OSError as err:
            raise _write_error(path, err) from None
        if tx is None:
            _place(tmp_path, path, force)
        else:
            tx.pending.append((tmp_path, path, force))
            tx.targets.add(path)
            tx.locks.append(lock)
        placed = True
    finally:
        if not placed or tx is None:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
            with contextlib.suppress(OSError):
                lock.unlink()


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


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), if known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None
