"""Build the project's image without a registry or a Docker daemon, and cache it as an archive.

`build_project_image()` builds the repository's `Dockerfile` with buildah on a Debian base that
`base_image()` makes from Debian packages with mmdebstrap (using the machine's configured Debian
mirror), and exports both as docker-archive tarballs under `~/.cache/opspawn/images/`
(`$OPSPAWN_CACHE_DIR` moves the root). Where buildah is missing but a BuildKit-capable Docker
exists, `docker buildx build` makes the project image on the Dockerfile's default base instead.

An archive is named after a hash of everything that goes into it (the Dockerfile and the sources
it copies; the base's mmdebstrap command), so a source change builds a new image and an unchanged
tree reuses the cached one. Builds happen under a cache lock: parallel pytest workers build once.

pip inside the build reaches the package index with the host's pip settings and CA bundle: they
are written to a temporary directory that is mounted read-only at `/etc/xdg/pip` for the build
stage only (`buildah bud -v`). That stage is discarded, so nothing of the host reaches the image.

`python -m opspawn.dev.image` builds (if needed) and prints the reference, archive and size.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from opspawn.dev.binaries import cache_lock, cache_root

REPOSITORY = Path(__file__).resolve().parents[3]
IMAGE_NAME = "localhost/opspawn"
BASE_NAME = "localhost/opspawn-base"
DEBIAN_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
IMAGE_SOURCES = ("Dockerfile", "pyproject.toml", "README.md", "api", "operator", "runner", "src")
"""What the Dockerfile copies (and the Dockerfile itself): the build context and the hash."""

_BASE_DPKG_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
)
"""What the official slim images also leave out of their Debian packages (copyright files stay)."""
_PIP_SETTINGS = (
    "index-url",
    "extra-index-url",
    "trusted-host",
    "find-links",
    "proxy",
    "timeout",
    "retries",
    "cert",
    "client-cert",
)
"""The host's pip settings that decide how pip reaches an index (nothing about what it installs)."""
_PIP_FILE_SETTINGS = ("cert", "client-cert")
_BUILD_PIP_DIR = "/etc/xdg/pip"
"""Where the build stage finds the host's pip settings (pip reads /etc/xdg/pip/pip.conf)."""

_REQUIRED_TOOLS = {"buildah": "buildah", "mmdebstrap": "mmdebstrap", "runc": "runc"}
"""Command -> the Debian package that provides it."""


@dataclass(frozen=True)
class ImageArchive:
    """An image in a docker-archive tarball: `ctr images import`, `docker load` and
    `buildah pull docker-archive:` all read it, and it carries `reference` as its tag."""

    reference: str
    archive: Path

    @property
    def size_bytes(self) -> int:
        """The archive's size: the image's uncompressed size (layers plus a little metadata)."""
        return self.archive.stat().st_size


def images_dir() -> Path:
    return cache_root() / "images"


def missing_prerequisites() -> list[str]:
    """Why this machine cannot build the images with buildah (empty when it can)."""
    reasons = [
        f"`{command}` is missing (apt-get install {package})"
        for command, package in _REQUIRED_TOOLS.items()
        if shutil.which(command) is None
    ]
    if os.geteuid() != 0:
        reasons.append("buildah and mmdebstrap run as root here (no rootless setup)")
    return reasons


def project_version() -> str:
    data = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    version: str = data["project"]["version"]
    return version


# --------------------------------------------------------------------------- base image


def debian_mirror_lines(sources: Iterable[Path] | None = None) -> list[str]:
    """One-line apt sources for DEBIAN_SUITE (and its -updates/-security suites) from the
    machine's own apt configuration, so the base comes from the mirror this machine uses."""
    if sources is None:
        etc = Path("/etc/apt")
        sources = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    lines: list[str] = []
    for path in sources:
        if not path.is_file():
            continue
        if path.name.endswith(".sources"):
            lines.extend(_deb822_lines(path.read_text()))
        elif path.name.endswith(".list"):
            lines.extend(_one_line_entries(path.read_text()))
    return [line for line in dict.fromkeys(lines) if _is_base_suite(line.split()[2])]


def _is_base_suite(suite: str) -> bool:
    return suite == DEBIAN_SUITE or suite.startswith(f"{DEBIAN_SUITE}-")


def _one_line_entries(text: str) -> Iterator[str]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        # Options ("deb [signed-by=...] uri ...") are dropped: the base trusts Debian's keyring.
        line = re.sub(r"\[[^]]*\]\s*", "", line)
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "deb":
            yield " ".join(fields)


def _deb822_lines(text: str) -> Iterator[str]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for raw in stanza.splitlines():
            if raw.startswith("#") or ":" not in raw or raw[:1].isspace():
                continue
            key, value = raw.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield f"deb {uri} {suite} {fields.get('components', 'main')}"


def _digest(parts: Iterable[bytes]) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(len(part).to_bytes(8, "big"))
        sha.update(part)
    return sha.hexdigest()[:12]


def _mmdebstrap_command(output: Path, mirrors: list[str]) -> list[str]:
    return [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in _BASE_DPKG_EXCLUDES),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        DEBIAN_SUITE,
        str(output),
        *mirrors,
    ]


def base_image() -> ImageArchive:
    """The Debian base (python3 + venv + CA certificates from the machine's Debian mirror),
    made once with mmdebstrap and kept as an archive and in buildah's storage."""
    _require_tools()
    mirrors = debian_mirror_lines()
    if not mirrors:
        raise RuntimeError(
            f"no Debian {DEBIAN_SUITE} mirror found in /etc/apt/sources.list or "
            "/etc/apt/sources.list.d/: the base image is made from the machine's Debian mirror"
        )
    digest = _digest(part.encode() for part in _mmdebstrap_command(Path("-"), mirrors))
    image = ImageArchive(
        reference=f"{BASE_NAME}:{DEBIAN_SUITE}-{digest}",
        archive=images_dir() / f"opspawn-base-{DEBIAN_SUITE}-{digest}.tar",
    )
    with cache_lock("image-base"):
        if not image.archive.is_file():
            _make_base(image, mirrors)
            for older in images_dir().glob("opspawn-base-*.tar"):
                if older != image.archive:
                    older.unlink()
        _ensure_in_storage(image)
    return image


def _make_base(image: ImageArchive, mirrors: list[str]) -> None:
    image.archive.parent.mkdir(parents=True, exist_ok=True)
    log = _log_path("base")
    _say(f"making the Debian base image {image.reference} with mmdebstrap (log: {log})")
    with tempfile.TemporaryDirectory(dir=image.archive.parent) as staging:
        rootfs = Path(staging) / "rootfs.tar"
        _run(_mmdebstrap_command(rootfs, mirrors), log)
        container = _run(["buildah", "from", "scratch"], log, capture=True).strip()
        try:
            _run(["buildah", "add", container, str(rootfs), "/"], log)
            _run(
                [
                    "buildah",
                    "config",
                    "--env",
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--env",
                    "LANG=C.UTF-8",
                    "--cmd",
                    "python3",
                    container,
                ],
                log,
            )
            _run(["buildah", "commit", "--rm", container, image.reference], log)
        except BaseException:
            subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
            raise
        _export(image, Path(staging), log)


# --------------------------------------------------------------------------- project image


def source_files(root: Path = REPOSITORY) -> list[Path]:
    """The files of IMAGE_SOURCES that go into the image (no bytecode, no editor leftovers)."""
    files: list[Path] = []
    for name in IMAGE_SOURCES:
        path = root / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files.extend(
            candidate
            for candidate in candidates
            if candidate.is_file()
            and "__pycache__" not in candidate.parts
            and not candidate.name.endswith((".pyc", "~", ".swp"))
            and not any(part.endswith(".egg-info") for part in candidate.parts)
        )
    return files


def sources_digest(base_reference: str, root: Path = REPOSITORY) -> str:
    """A hash of the base and of every file (path and content) that goes into the image."""

    def parts() -> Iterator[bytes]:
        yield base_reference.encode()
        for path in source_files(root):
            yield str(path.relative_to(root)).encode()
            yield path.read_bytes()

    return _digest(parts())


def build_project_image() -> ImageArchive:
    """The project image for the current sources, built and exported if not cached yet.

    The sources are copied first and the copy is both hashed and built, so an edit made while
    the build waits for the lock or runs can never end in an image named after other sources."""
    if shutil.which("buildah") is None and _docker_has_buildx():
        return _build_with_docker()
    base = base_image()
    images_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=images_dir()) as staging:
        context = _copy_context(Path(staging) / "context")
        image = _project_image(sources_digest(base.reference, context))
        with cache_lock("image"):
            if not image.archive.is_file():
                _build_with_buildah(image, base, context, Path(staging))
                _prune_older_archives(image)
    return image


def _project_image(digest: str) -> ImageArchive:
    return ImageArchive(
        reference=f"{IMAGE_NAME}:{project_version()}-{digest}",
        archive=images_dir() / f"opspawn-{project_version()}-{digest}.tar",
    )


def _build_with_buildah(
    image: ImageArchive, base: ImageArchive, context: Path, staging: Path
) -> None:
    log = _log_path("opspawn")
    _say(f"building {image.reference} with buildah on {base.reference} (log: {log})")
    _remove_build_leftovers(base)
    pip_dir = staging / "pip"
    write_build_pip_settings(pip_dir)
    started = time.monotonic()
    _run(
        [
            "buildah",
            "bud",
            "--runtime",
            "runc",
            # The process lacks CAP_SYS_RESOURCE: buildah's default rlimits are refused.
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=20000:20000",
            # Keep the dependency layer: a source change then reinstalls only the project.
            "--layers",
            "--build-arg",
            f"BASE_IMAGE={base.reference}",
            "--volume",
            f"{pip_dir}:{_BUILD_PIP_DIR}:ro",
            "--tag",
            image.reference,
            "--file",
            str(context / "Dockerfile"),
            str(context),
        ],
        log,
    )
    _say(f"built {image.reference} in {time.monotonic() - started:.0f} s")
    _export(image, staging, log)


def _copy_context(context: Path) -> Path:
    """A copy of the files that go into the image: the build context."""
    for path in source_files():
        target = context / path.relative_to(REPOSITORY)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return context


def host_pip_settings() -> dict[str, str]:
    """The host pip's effective network settings (config files and PIP_* variables alike)."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    settings: dict[str, str] = {}
    # Lines look like `global.cert='/etc/ssl/...'` or `:env:.default-timeout='180'`; later
    # lines (environment) win over earlier ones (files), as in pip itself. Local find-links
    # directories are the host's own and do not exist in the build.
    for line in listing.splitlines():
        match = re.fullmatch(r"[^.]*\.([a-z-]+)='(.*)'", line.strip())
        if match is None:
            continue
        key = "timeout" if match[1] == "default-timeout" else match[1]
        local_links = key == "find-links" and not match[2].startswith(("http://", "https://"))
        if key in _PIP_SETTINGS and not local_links:
            settings[key] = match[2]
    return settings


def write_build_pip_settings(directory: Path) -> None:
    """pip.conf (plus copies of the files it names) for the build stage to mount read-only."""
    directory.mkdir()
    settings = host_pip_settings()
    for key in _PIP_FILE_SETTINGS:
        if key in settings:
            copy = directory / f"{key}.pem"
            shutil.copyfile(settings[key], copy)
            settings[key] = f"{_BUILD_PIP_DIR}/{copy.name}"
    body = "".join(f"{key} = {value}\n" for key, value in settings.items())
    (directory / "pip.conf").write_text(f"[global]\n{body}")


def _remove_build_leftovers(base: ImageArchive) -> None:
    """Remove the working containers an interrupted build left on the base (called under the
    image lock, so no build of ours is running; nothing else builds on this base)."""
    listed = subprocess.run(
        ["buildah", "containers", "--quiet", "--filter", f"ancestor={base.reference}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if listed:
        subprocess.run(["buildah", "rm", *listed], capture_output=True, check=False)


def _prune_older_archives(current: ImageArchive) -> None:
    """Keep the current project image and the one before it (another process may still be
    importing that one), archives and tags: each is several hundred MB. An older image still
    used by a container stays in buildah's storage (its removal is refused)."""
    archives = sorted(
        images_dir().glob("opspawn-[0-9]*.tar"), key=lambda path: path.stat().st_mtime
    )
    kept = {current.archive, *archives[-2:]}
    for archive in archives:
        if archive not in kept:
            archive.unlink(missing_ok=True)
    if shutil.which("buildah") is None:
        return
    kept_tags = {f"{IMAGE_NAME}:{path.name.removeprefix('opspawn-')[:-4]}" for path in kept}
    tags = subprocess.run(
        [
            "buildah",
            "images",
            "--format",
            "{{.Name}}:{{.Tag}}",
            "--filter",
            f"reference={IMAGE_NAME}",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    for tag in tags:
        if tag not in kept_tags:
            subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)


def _docker_has_buildx() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "buildx", "version"], capture_output=True, check=False)
    return probe.returncode == 0


def _build_with_docker() -> ImageArchive:
    """Where only Docker with BuildKit exists: the Dockerfile's default base from its registry."""
    images_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=images_dir()) as staging:
        context = _copy_context(Path(staging) / "context")
        image = _project_image(sources_digest("docker:default-base", context))
        with cache_lock("image"):
            if not image.archive.is_file():
                log = _log_path("opspawn")
                _say(f"building {image.reference} with docker buildx (log: {log})")
                _run(
                    ["docker", "buildx", "build", "--load", "-t", image.reference, str(context)],
                    log,
                )
                partial = Path(staging) / "image.tar"
                _run(["docker", "save", "-o", str(partial), image.reference], log)
                partial.replace(image.archive)
                _prune_older_archives(image)
    return image


# --------------------------------------------------------------------------- shared steps


def _require_tools() -> None:
    reasons = missing_prerequisites()
    if reasons:
        raise RuntimeError("cannot build the image here: " + "; ".join(reasons))


def _ensure_in_storage(image: ImageArchive) -> None:
    """Put an archived image back into buildah's storage if it is not there (e.g. after a
    cleanup of /var/lib/containers): the project build needs its base by reference."""
    present = subprocess.run(
        ["buildah", "inspect", "--type", "image", image.reference],
        capture_output=True,
        check=False,
    )
    if present.returncode != 0:
        _run(["buildah", "pull", f"docker-archive:{image.archive}"], _log_path("base"))


def _export(image: ImageArchive, staging: Path, log: Path) -> None:
    """`buildah push` to a docker-archive in `staging`, then move it into place atomically."""
    partial = staging / "image.tar"
    started = time.monotonic()
    _run(
        ["buildah", "push", image.reference, f"docker-archive:{partial}:{image.reference}"],
        log,
    )
    partial.replace(image.archive)
    _say(f"exported {image.archive} in {time.monotonic() - started:.0f} s")


def _log_path(name: str) -> Path:
    log = cache_root() / "build" / f"image-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return log


def _run(args: list[str], log: Path, *, capture: bool = False) -> str:
    """Run a build step with its output appended to `log` as it comes; its stdout when
    `capture` (which then goes to the log only after the step)."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        completed = subprocess.run(
            args,
            stdout=subprocess.PIPE if capture else out,
            stderr=out,
            text=True,
            check=False,
        )
        if capture:
            out.write(completed.stdout)
    if completed.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{args[0]} {args[1]} failed (log {log}):\n{tail}")
    return completed.stdout if capture else ""


def _say(message: str) -> None:
    print(f"opspawn: {message}", file=sys.stderr, flush=True)


def main() -> None:
    """`python -m opspawn.dev.image`: build the project image if needed and describe it."""
    image = build_project_image()
    print(f"reference: {image.reference}")
    print(f"archive:   {image.archive}")
    print(f"size:      {image.size_bytes / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
