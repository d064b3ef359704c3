from __future__ import annotations

from pathlib import Path

import pytest

from opspawn.dev import tools


def test_tools_live_in_the_cache_by_name_and_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPSPAWN_CACHE_DIR", str(tmp_path))
    assert tools.HELM.binary == tmp_path / "bin" / "helm-v3.22.0" / "helm"
    assert tools.KUBECONFORM.binary == tmp_path / "bin" / "kubeconform-v0.8.0" / "kubeconform"
    assert tools.WEAVIATE.binary == (
        tmp_path / "bin" / "weaviate-server-v1.35.2" / "weaviate-server"
    )


def test_a_missing_tool_is_built_once_then_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPSPAWN_CACHE_DIR", str(tmp_path))
    built: list[str] = []

    def build(tool: tools.GoTool) -> None:
        built.append(tool.name)
        tool.binary.parent.mkdir(parents=True)
        tool.binary.write_text("#!/bin/sh\n")
        tool.binary.chmod(0o755)

    monkeypatch.setattr(tools, "_build", build)
    assert tools.tool_binary("kubeconform") == tools.KUBECONFORM.binary
    assert tools.tool_binary("kubeconform") == tools.KUBECONFORM.binary
    assert built == ["kubeconform"]
