"""Find or build the pinned tools that `go install` makes from their Go modules: `helm` and
`kubeconform` for the chart, `weaviate-server` for long-term memory, `actionlint` for the CI
workflows.

Each tool lives in the cache at `~/.cache/opspawn/bin/<tool>-<version>/<tool>` (`$OPSPAWN_CACHE_DIR`
moves the root, as for the control plane). A missing one is built with the machine's Go from the Go
module proxy (`go install <package>@<version>`: none of the modules has `replace` directives), once
per machine, under a lock of its own so that it never waits for a control-plane build.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from opspawn.dev.binaries import cache_lock, cache_root, run_go


@dataclass(frozen=True)
class GoTool:
    name: str
    package: str
    version: str
    ldflags: tuple[str, ...] = ()
    """`-X` settings the upstream release builds stamp (version strings)."""

    @property
    def binary(self) -> Path:
        return cache_root() / "bin" / f"{self.name}-{self.version}" / self.name


HELM = GoTool(
    name="helm",
    package="helm.sh/helm/v3/cmd/helm",
    version="v3.22.0",
    ldflags=(
        "-X helm.sh/helm/v3/internal/version.version=v3.22.0",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
        # Helm's Makefile derives the default Kubernetes version of `helm template` and of the
        # deprecation lint from its client-go (v0.37 -> 1.37).
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37",
    ),
)
KUBECONFORM = GoTool(
    name="kubeconform",
    package="github.com/yannh/kubeconform/cmd/kubeconform",
    version="v0.8.0",
    ldflags=("-X main.version=v0.8.0",),
)
WEAVIATE = GoTool(
    name="weaviate-server",
    package="github.com/weaviate/weaviate/cmd/weaviate-server",
    # weaviate-client v4 refuses servers older than 1.27; recent versions need Go >= 1.26.
    version="v1.35.2",
)

KUBE_ROUTER = GoTool(
    name="kube-router",
    package="github.com/cloudnativelabs/kube-router/v2/cmd/kube-router",
    # The real node's NetworkPolicy firewall; the only v2 version the module proxy serves.
    version="v2.1.0",
)

ACTIONLINT = GoTool(
    name="actionlint",
    package="github.com/rhysd/actionlint/cmd/actionlint",
    # Checks .github/workflows/ statically: the release workflow never runs on this machine.
    version="v1.7.12",
)

TOOLS = {tool.name: tool for tool in (HELM, KUBECONFORM, WEAVIATE, KUBE_ROUTER, ACTIONLINT)}


def _ready(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def tool_binary(name: str) -> Path:
    """The path of tool `name` (a key of TOOLS), building it first if the cache lacks it."""
    tool = TOOLS[name]
    if _ready(tool.binary):
        return tool.binary
    with cache_lock(f"{tool.name}-{tool.version}"):
        if not _ready(tool.binary):
            _build(tool)
    return tool.binary


def _build(tool: GoTool) -> None:
    if shutil.which("go") is None:
        raise FileNotFoundError(f"no Go toolchain on PATH to build {tool.name}")
    tool.binary.parent.mkdir(parents=True, exist_ok=True)
    log = cache_root() / "build" / f"{tool.name}-{tool.version}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"opspawn: building {tool.name} {tool.version} from its Go module (first time only; "
        f"log: {log})",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(dir=tool.binary.parent) as staging:
        run_go(
            [
                "install",
                "-trimpath",
                "-ldflags",
                " ".join(["-s", "-w", *tool.ldflags]),
                f"{tool.package}@{tool.version}",
            ],
            Path(staging),
            log,
            # `go install pkg@version` builds outside any module: no -mod flag applies.
            env={"GOBIN": staging, "GOFLAGS": ""},
        )
        (Path(staging) / tool.name).replace(tool.binary)


def main() -> None:
    """`python -m opspawn.dev.tools`: provide every tool and print its path."""
    for name in TOOLS:
        print(tool_binary(name))


if __name__ == "__main__":
    main()
