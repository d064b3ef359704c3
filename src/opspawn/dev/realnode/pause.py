"""The real node's sandbox image: a static C `pause` (pause.c) in a scratch image, built with
gcc and buildah, exported as a docker-archive that `ctr images import` reads.

No registry is involved: containerd's `sandbox_image` names this image, and the archive is cached
under `~/.cache/opspawn/images/` by the hash of the source, so it is built once per machine.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from pathlib import Path

from opspawn.dev.binaries import cache_lock, cache_root

SOURCE = Path(__file__).with_name("pause.c")
REFERENCE = "localhost/opspawn/pause:1"
"""The image's name in containerd (and containerd's `sandbox_image`)."""


def _run(argv: list[str]) -> str:
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {completed.stderr.strip()[-2000:]}")
    return completed.stdout.strip()


def pause_archive() -> Path:
    """The docker-archive of the pause image, built first if the cache lacks it."""
    digest = hashlib.sha256(SOURCE.read_bytes() + REFERENCE.encode()).hexdigest()[:16]
    archive = cache_root() / "images" / f"pause-{digest}.tar"
    if archive.exists():
        return archive
    with cache_lock("pause-image"):
        if not archive.exists():
            _build(archive)
    return archive


def _build(archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        binary = Path(scratch) / "pause"
        _run(["gcc", "-static", "-Os", "-s", "-o", str(binary), str(SOURCE)])
        container = _run(["buildah", "from", "scratch"])
        try:
            _run(["buildah", "copy", container, str(binary), "/pause"])
            _run(
                [
                    "buildah",
                    "config",
                    "--entrypoint",
                    '["/pause"]',
                    "--user",
                    "65535:65535",
                    container,
                ]
            )
            image = _run(["buildah", "commit", "--quiet", container, REFERENCE])
        finally:
            _run(["buildah", "rm", container])
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        try:
            _run(["buildah", "push", "--quiet", image, f"docker-archive:{partial}:{REFERENCE}"])
        finally:
            _run(["buildah", "rmi", "--force", image])
        partial.replace(archive)
