"""The http_fetch allow-list: exact hosts, wildcards, ports, schemes."""

from __future__ import annotations

import pytest

from opspawn.runner.tools import ToolError
from opspawn.runner.tools.http_fetch import HostAllowList

ALLOW = HostAllowList(["api.example.org", "*.example.com", "10.0.0.5:8080"])


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.org/v1",
        "http://api.example.org",
        "https://API.Example.ORG./x",
        "https://a.example.com/",
        "https://deep.a.example.com:443/",
        "http://10.0.0.5:8080/metrics",
    ],
)
def test_admitted(url: str) -> None:
    ALLOW.check(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://example.com/", "not in this task's allow-list"),
        ("https://evil.com/?x=a.example.com", "not in this task's allow-list"),
        ("https://a.example.com.evil.com/", "not in this task's allow-list"),
        ("https://api.example.org:8443/", "not in this task's allow-list"),
        ("http://10.0.0.5/", "not in this task's allow-list"),
        ("file:///etc/passwd", "only http and https"),
        ("ftp://api.example.org/", "only http and https"),
        ("https://user:pw@api.example.org/", "credentials"),
        ("https:///path", "has no host"),
        ("https://api.example.org:99999/", "not a valid URL"),
    ],
)
def test_refused(url: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        ALLOW.check(url)
