"""What every entry point does with bad input: outputs checked before any work (:func:`ensure_writable`), and
errors as one line naming the file, field or value with a non-zero exit (:func:`report_errors`); the
traceback only with ``HYDRA_FULL_ERROR=1`` or ``--debug`` (:func:`run`)."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from pathlib import Path

DEBUG_FLAG = "--debug"


class OutputError(ValueError):
    """An output path that cannot be created or written."""


def ensure_writable(path: str | Path, what: str, folder: bool = False) -> Path:
    """Create ``path`` (``folder``) or the folder of the file ``path`` and prove it takes a file, before
    the work that would write there; :class:`OutputError` naming ``what=path`` and why otherwise."""
    path = Path(path)
    target = path if folder else path.parent
    blocker = next((p for p in [target, *target.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"{what}={path}: {blocker} is a file, so the folder {target} cannot be created")
    if not folder and path.is_dir():
        raise OutputError(f"{what}={path}: is a folder; expected a file name")
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".write_check_"):
            pass
    except OSError as err:
        raise OutputError(f"{what}={path}: the folder {target} cannot be written "
                          f"({err.strerror or type(err).__name__})") from None
    return path


def debugging() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def one_line(err: BaseException) -> str:
    """The error's own message on one line (Hydra's instantiation wrapper unwrapped to its cause)."""
    while type(err).__name__ == "InstantiationException" and err.__cause__ is not None:
        err = err.__cause__
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, (ValueError, OSError, KeyError)) else f"{type(err).__name__}: {text}"


def report_errors(fn):
    """Wrap a ``@hydra.main`` task: an exception becomes ``error: <one line>`` on stderr and exit code 1,
    unless debugging (then it propagates with its traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - every error ends here as one line
            if debugging():
                raise
            sys.exit(f"error: {one_line(err)}")

    return wrapper


def run(main) -> None:
    """Call a Hydra ``main`` after turning ``--debug`` (which Hydra does not know) into HYDRA_FULL_ERROR=1."""
    if DEBUG_FLAG in sys.argv:
        sys.argv.remove(DEBUG_FLAG)
        os.environ["HYDRA_FULL_ERROR"] = "1"
    main()
