"""Find or make the control-plane binaries: etcd, kube-apiserver, kube-controller-manager, kubectl;
and, for the real node only, kubelet, kube-scheduler and kube-proxy (`node_binaries()`).

Each binary is looked up, in order:

1. in `$KUBEBUILDER_ASSETS` (the envtest convention; envtest has no kube-controller-manager, so
   that one usually comes from the next steps);
2. in the cache, `~/.cache/opspawn/bin/k8s-<version>/` (`$OPSPAWN_CACHE_DIR` moves it);
3. from the official release downloads, checked against their published SHA-256, unless
   `$OPSPAWN_NO_DOWNLOAD` is set or the network does not allow it;
4. built from the Go modules: a small module of our own requires `k8s.io/kubernetes` with each
   staging module replaced by its matching `v0.x.y`, and etcd at the version Kubernetes pins.

A build or download happens once per machine, under a file lock, and lands in the cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.8"
"""The etcd that k8s.io/kubernetes at KUBERNETES_VERSION itself requires."""

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-proxy")
"""What the real node (`opspawn.dev.realnode`) adds; built only when a real node is asked for."""

_GO_PACKAGES = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "kubelet": "k8s.io/kubernetes/cmd/kubelet",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
}


def cache_root() -> Path:
    return Path(os.environ.get("OPSPAWN_CACHE_DIR", Path.home() / ".cache" / "opspawn"))


def cache_bin_dir() -> Path:
    return cache_root() / "bin" / f"k8s-{KUBERNETES_VERSION}"


def _log(message: str) -> None:
    print(f"opspawn: {message}", file=sys.stderr, flush=True)


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@contextmanager
def cache_lock(name: str = "build") -> Iterator[None]:
    """Hold the cache's file lock `name` (one build of a thing per machine at a time)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lookup(name: str) -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and _executable(Path(assets) / name):
        return Path(assets) / name
    cached = cache_bin_dir() / name
    return cached if _executable(cached) else None


def control_plane_binaries() -> dict[str, Path]:
    """Paths of all BINARIES, fetching or building what is missing."""
    return _binaries(BINARIES)


def node_binaries() -> dict[str, Path]:
    """Paths of NODE_BINARIES (kubelet, kube-scheduler, kube-proxy), fetching or building them."""
    return _binaries(NODE_BINARIES)


def _binaries(names: tuple[str, ...]) -> dict[str, Path]:
    found = {name: _lookup(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        with cache_lock():
            missing = [name for name in missing if _lookup(name) is None]
            if missing:
                _provide(missing)
        found = {name: _lookup(name) for name in names}
    resolved = {name: path for name, path in found.items() if path is not None}
    if len(resolved) != len(names):
        raise FileNotFoundError(f"binaries still missing: {sorted(set(names) - set(resolved))}")
    return resolved


def _provide(missing: list[str]) -> None:
    target = cache_bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("OPSPAWN_NO_DOWNLOAD"):
        try:
            for name in missing:
                _download(name, target)
            return
        except OSError as error:
            _log(
                f"download of {', '.join(missing)} not possible ({error}); building from Go modules"
            )
    build_from_go_modules(missing, target)


# --------------------------------------------------------------------------- download


def _fetch(url: str, timeout: float = 20.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed https URLs
        data: bytes = response.read()
        return data


def _download(name: str, target: Path) -> None:
    arch = _arch()
    if name == "etcd":
        base = f"https://github.com/etcd-io/etcd/releases/download/{ETCD_VERSION}"
        archive = f"etcd-{ETCD_VERSION}-linux-{arch}.tar.gz"
        sums = _fetch(f"{base}/SHA256SUMS").decode()
        expected = next(line.split()[0] for line in sums.splitlines() if line.endswith(archive))
        data = _fetch(f"{base}/{archive}", timeout=300)
        _check_sha256(data, expected, archive)
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / archive
            path.write_bytes(data)
            with tarfile.open(path) as tar:
                member = tar.extractfile(f"etcd-{ETCD_VERSION}-linux-{arch}/etcd")
                if member is None:
                    raise OSError(f"{archive} has no etcd binary")
                _install(member.read(), target / "etcd")
        return
    url = f"https://dl.k8s.io/release/{KUBERNETES_VERSION}/bin/linux/{arch}/{name}"
    expected = _fetch(f"{url}.sha256").decode().split()[0]
    data = _fetch(url, timeout=300)
    _check_sha256(data, expected, name)
    _install(data, target / name)


def _check_sha256(data: bytes, expected: str, what: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise OSError(f"{what}: SHA-256 {actual} does not match the published {expected}")


def _install(data: bytes, path: Path) -> None:
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(path)


# --------------------------------------------------------------------------- build


def _staging_replaces(kubernetes_go_mod: str, version: str) -> list[str]:
    """`replace` lines pinning each staging module to the v0.x.y matching Kubernetes `version`."""
    staging_version = "v0." + version.removeprefix("v").split(".", 1)[1]
    modules = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", kubernetes_go_mod, re.M)
    if not modules:
        raise RuntimeError("no staging replaces found in k8s.io/kubernetes go.mod")
    return [f"replace {module} => {module} {staging_version}" for module in sorted(set(modules))]


def run_go(args: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> str:
    """Run `go args` in `cwd` (output appended to `log`, extra `env` on top); its stdout."""
    environment = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0", **(env or {})}
    with log.open("a") as out:
        out.write(f"$ go {' '.join(args)}\n")
        out.flush()
        completed = subprocess.run(
            ["go", *args],
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            check=False,
        )
    if completed.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"go {' '.join(args)} failed (log {log}):\n{tail}")
    return completed.stdout


def build_from_go_modules(names: list[str], target: Path) -> None:
    """Build the named binaries with the machine's Go toolchain into `target`."""
    if shutil.which("go") is None:
        raise FileNotFoundError("no Go toolchain on PATH to build the control-plane binaries")
    module = cache_root() / "build" / f"k8s-{KUBERNETES_VERSION}"
    module.mkdir(parents=True, exist_ok=True)
    log = module / "build.log"
    _log(f"building {', '.join(names)} from Go modules (first time only; log: {log})")
    info = json.loads(
        run_go(
            ["mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"],
            module.parent,
            log,
        )
    )
    replaces = _staging_replaces(Path(info["GoMod"]).read_text(), KUBERNETES_VERSION)
    requires = [
        f"k8s.io/kubernetes {KUBERNETES_VERSION}",
        f"go.etcd.io/etcd/server/v3 {ETCD_VERSION}",
    ]
    (module / "go.mod").write_text(
        "module opspawn.local/controlplane\n\ngo 1.26.0\n\n"
        + "".join(f"require {line}\n" for line in requires)
        + "\n"
        + "\n".join(replaces)
        + "\n"
    )
    imports = "\n".join(f'\t_ "{package}"' for package in _GO_PACKAGES.values())
    (module / "tools.go").write_text(
        f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"
    )
    run_go(["mod", "tidy"], module, log)
    minor = KUBERNETES_VERSION.split(".")[1]
    version_flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        version_flags += [
            f"-X {package}.gitVersion={KUBERNETES_VERSION}",
            f"-X {package}.gitMajor=1",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    ldflags = " ".join(["-s", "-w", *version_flags])
    output = module / "out"
    output.mkdir(exist_ok=True)
    for name in names:
        run_go(
            [
                "build",
                "-trimpath",
                "-ldflags",
                ldflags,
                "-o",
                str(output / name),
                _GO_PACKAGES[name],
            ],
            module,
            log,
        )
        (output / name).replace(target / name)
    _log(f"built {', '.join(names)} into {target}")
