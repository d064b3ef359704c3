"""The project image, built by `opspawn.dev.image`, run the way a restricted Pod runs it.

Each check runs the exported archive (the file the real node imports) with runc directly: the
image's own user (65532, which has no passwd entry), its environment and entrypoint, a
read-only root filesystem with nothing writable mounted anywhere, no capabilities and no
network. What is checked is what a user would see: the operator's and the runner's commands
work, and the operator's kopf start goes past the identity that crashed it before.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opspawn.dev.image import ImageArchive, build_project_image, missing_prerequisites
from opspawn.dev.versions import declared_versions

pytestmark = [
    pytest.mark.skipif(bool(missing_prerequisites()), reason="; ".join(missing_prerequisites())),
    # The first use builds the base and the image: minutes, once per source tree.
    pytest.mark.timeout(1800),
]

RUN_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str


@dataclass(frozen=True)
class MountedImage:
    rootfs: Path
    config: dict[str, Any]
    """The image's OCI config (User, Env, Entrypoint ...)."""


@pytest.fixture(scope="module")
def image() -> ImageArchive:
    return build_project_image()


@pytest.fixture(scope="module")
def mounted(image: ImageArchive) -> Iterator[MountedImage]:
    """A buildah container made from the exported archive, its root filesystem mounted."""
    container = _buildah("from", "--pull-never", f"docker-archive:{image.archive}").strip()
    try:
        rootfs = Path(_buildah("mount", container).strip())
        inspected = json.loads(_buildah("inspect", "--type", "container", container))
        yield MountedImage(rootfs=rootfs, config=inspected["OCIv1"]["config"])
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)


def _buildah(*args: str) -> str:
    return subprocess.run(
        ["buildah", *args], capture_output=True, text=True, check=True, timeout=600
    ).stdout


def _run(
    mounted: MountedImage,
    tmp_path: Path,
    args: list[str],
    env: dict[str, str] | None = None,
    entrypoint: bool = True,
) -> Run:
    """Run `args` (after the image's entrypoint) in the image as a restricted Pod would."""
    uid, _, gid = str(mounted.config["User"]).partition(":")
    argv = [*(mounted.config.get("Entrypoint") or []), *args] if entrypoint else args
    bundle = tmp_path / f"bundle-{uuid.uuid4().hex[:8]}"
    bundle.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["root"] = {"path": str(mounted.rootfs), "readonly": True}
    spec["process"].update(
        terminal=False,
        args=argv,
        cwd="/",
        user={"uid": int(uid), "gid": int(gid or uid)},
        env=[*mounted.config["Env"], *(f"{k}={v}" for k, v in (env or {}).items())],
        noNewPrivileges=True,
        capabilities={key: [] for key in ("bounding", "effective", "permitted")},
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    container_id = f"opspawn-image-test-{uuid.uuid4().hex[:8]}"
    try:
        completed = subprocess.run(
            ["runc", "run", "--bundle", str(bundle), container_id],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=RUN_TIMEOUT_SECONDS,
        )
    finally:
        subprocess.run(
            ["runc", "delete", "--force", container_id], capture_output=True, check=False
        )
        shutil.rmtree(bundle)
    return Run(completed.returncode, completed.stdout + completed.stderr)


def test_the_image_runs_as_65532_without_a_passwd_entry(
    mounted: MountedImage, tmp_path: Path
) -> None:
    assert mounted.config["User"] == "65532:65532"
    lookup = _run(
        mounted,
        tmp_path,
        ["python3", "-c", "import os, pwd; print(os.getuid()); pwd.getpwuid(os.getuid())"],
        entrypoint=False,
    )
    assert lookup.returncode == 1
    assert "65532" in lookup.output
    assert "getpwuid(): uid not found: 65532" in lookup.output


def test_operator_help_on_a_read_only_root(mounted: MountedImage, tmp_path: Path) -> None:
    version = declared_versions()["pyproject.toml project.version"]
    shown = _run(mounted, tmp_path, ["operator", "--help"])
    assert shown.returncode == 0, shown.output
    assert "--runner-image" in shown.output
    assert f"ghcr.io/opspawn/opspawn:{version}" in shown.output


def test_runner_config_check_on_a_read_only_root(mounted: MountedImage, tmp_path: Path) -> None:
    task = {
        "goal": "Say hello.",
        "model": {
            "provider": "openai",
            "name": "gpt-4o-mini",
            "apiKeySecretRef": {"name": "k", "key": "k"},
        },
    }
    env = {
        "OPSPAWN_TASK_SPEC": json.dumps(task),
        "OPSPAWN_TASK_UID": "0b6c8a52-image-test",
        "OPSPAWN_TASK_NAME": "hello",
        "OPSPAWN_TASK_NAMESPACE": "team-a",
        "OPSPAWN_NATS_URL": "nats://127.0.0.1:4222",
        "OPSPAWN_SIGNING_KEY": "image-test-signing-key-0123456789abcdef",
        "OPSPAWN_MODEL_API_KEY": "sk-image-test-not-a-key",
    }
    usable = _run(mounted, tmp_path, ["runner", "--check-config"], env)
    assert usable.returncode == 0, usable.output
    assert "sk-image-test-not-a-key" not in usable.output
    broken = _run(
        mounted, tmp_path, ["runner", "--check-config"], {**env, "OPSPAWN_TASK_SPEC": "{"}
    )
    assert broken.returncode == 2, broken.output


def test_the_operator_gets_past_kopfs_identity_in_the_image(
    mounted: MountedImage, tmp_path: Path
) -> None:
    """kopf's start in the image ends at the cluster login (no credentials in this sandbox),
    which comes after the identity: not at getpwuid as it did before the fix."""
    script = (
        "import asyncio, kopf\n"
        "from opspawn.operator.main import kopf_operator\n"
        "try:\n"
        "    asyncio.run(asyncio.wait_for(kopf_operator(kopf.OperatorRegistry(), ()), 60))\n"
        "except BaseException as error:\n"
        "    print('stopped by', type(error).__name__, error)\n"
    )
    started = _run(mounted, tmp_path, ["python3", "-c", script], entrypoint=False)
    assert "stopped by" in started.output, started.output
    assert "getpwuid" not in started.output
    assert "credentials" in started.output.lower(), started.output


def test_nothing_in_the_image_is_for_building_or_testing(mounted: MountedImage) -> None:
    venv = mounted.rootfs / "opt" / "opspawn"
    assert (venv / "bin" / "opspawn").is_file()
    assert not (venv / "bin" / "pip").exists()
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("pip")), "pip is only for building"
    assert not list(site.glob("*/tests")), "packages' test suites are left out"
    assert not (mounted.rootfs / "etc" / "xdg" / "pip").exists(), "the host's pip settings stay out"
    assert not (mounted.rootfs / "src").exists(), "the build stage's sources stay out"


def test_make_image_prints_what_it_built(image: ImageArchive) -> None:
    """`make image` runs `python -m opspawn.dev.image`; with the image cached it only reports."""
    shown = subprocess.run(
        [sys.executable, "-m", "opspawn.dev.image"],
        capture_output=True,
        text=True,
        check=True,
        timeout=1500,
    ).stdout
    fields = dict(line.split(":", 1) for line in shown.splitlines())
    reference, archive = fields["reference"].strip(), Path(fields["archive"].strip())
    version = declared_versions()["pyproject.toml project.version"]
    assert reference.startswith(f"localhost/opspawn:{version}-")
    assert archive.is_file()
    assert archive.parent == image.archive.parent
    assert fields["size"].strip().endswith(" MB")
