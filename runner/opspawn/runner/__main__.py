"""`python -m opspawn.runner`: the same as `opspawn runner`."""

from opspawn.runner.cli import runner

runner()
