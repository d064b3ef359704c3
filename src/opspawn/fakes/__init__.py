"""Fakes of external services for tests and the dev stack.

`FakeModelServer` plays a scripted model over real HTTP in the OpenAI, Anthropic and Gemini
wire formats; `opspawn dev mock-model` (`opspawn.fakes.cli.mock_model`) runs it standalone.
"""

from opspawn.fakes.script import (
    Failure,
    Script,
    ScriptedCall,
    ScriptedUsage,
    Turn,
    default_script,
    load_script,
)
from opspawn.fakes.server import FakeModelServer, RecordedRequest

__all__ = [
    "Failure",
    "FakeModelServer",
    "RecordedRequest",
    "Script",
    "ScriptedCall",
    "ScriptedUsage",
    "Turn",
    "default_script",
    "load_script",
]
