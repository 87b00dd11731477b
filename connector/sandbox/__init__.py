"""A simulator of the parts of Keap the connector uses, for the demo, tests and benchmarks.

It shares no code with ``connector.keap``: it exists to catch the client's mistakes, so it
must not inherit them. The only common ground is Keap's own OpenAPI spec (``spec.py``).
"""

from connector.sandbox.faults import FaultSettings
from connector.sandbox.options import DEFAULT_PORT, SandboxOptions
from connector.sandbox.runner import RunningSandbox, describe, run_sandbox, start_sandbox

__all__ = [
    "DEFAULT_PORT",
    "FaultSettings",
    "RunningSandbox",
    "SandboxOptions",
    "describe",
    "run_sandbox",
    "start_sandbox",
]
