"""Write several files and one folder all or nothing: each is staged under a temporary name
beside its target and renamed into place; a failure part-way puts back what was there."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Changes:
    """Files and one folder to put in place together: staged first, then renamed into place;
    a failure part-way puts back what was there."""

    files: list[tuple[Path, str, int]] = field(default_factory=list)
    folder: tuple[Path, dict[str, tuple[bytes, int]]] | None = None

    def write(self, path: Path, text: str, mode: int = 0o644) -> None:
        """Put `text` at `path` (with `mode`) on commit."""
        self.files.append((path, text, mode))

    def replace_folder(self, path: Path, content: dict[str, tuple[bytes, int]]) -> None:
        """Replace the folder `path` by one holding `content` (relative path -> data, mode)."""
        self.folder = (path, content)

    def commit(self) -> None:
        """Put everything in place (the folder first, then the files in order), or nothing."""
        tag = f"{os.getpid()}"
        undo: list[tuple[Path, bytes | None, int]] = []
        moved: tuple[Path, Path | None] | None = None
        staged: list[Path] = []
        try:
            if self.folder is not None:
                path, content = self.folder
                new = path.with_name(f".{path.name}.new-{tag}")
                staged.append(new)
                _stage_folder(new, content)
                old = path.with_name(f".{path.name}.old-{tag}") if path.exists() else None
                if old is not None:
                    path.rename(old)
                moved = (path, old)
                new.rename(path)
            for target, text, mode in self.files:
                tmp = target.with_name(f".{target.name}.new-{tag}")
                staged.append(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                _write_new(tmp, text.encode(), mode)
                before = target.read_bytes() if target.exists() else None
                prev_mode = target.stat().st_mode & 0o777 if target.exists() else mode
                os.replace(tmp, target)
                undo.append((target, before, prev_mode))
        except BaseException:
            for target, before, mode in reversed(undo):
                if before is None:
                    target.unlink(missing_ok=True)
                else:
                    _write_new(target.with_name(f".{target.name}.undo-{tag}"), before, mode)
                    os.replace(target.with_name(f".{target.name}.undo-{tag}"), target)
            if moved is not None:
                path, old = moved
                if path.exists():
                    shutil.rmtree(path)
                if old is not None:
                    old.rename(path)
            raise
        finally:
            for tmp in staged:
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    tmp.unlink(missing_ok=True)
        if moved is not None and moved[1] is not None:
            shutil.rmtree(moved[1], ignore_errors=True)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(path, mode)


def _stage_folder(path: Path, content: dict[str, tuple[bytes, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700)
    for rel, (data, mode) in content.items():
        target = path / rel
        # Subfolders are mounted into containers (a bundle's config/ at /etc/soundscape), whose
        # non-root users must traverse them; the secrets are 0600 files of their own.
        for folder in reversed(target.relative_to(path).parents[:-1]):
            (path / folder).mkdir(mode=0o755, exist_ok=True)
        _write_new(target, data, mode)
