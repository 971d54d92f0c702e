"""inferq model runner: executes batches for the inferq worker agent.

The agent drives this process over stdin/stdout with length-prefixed
RunnerFrame protobufs (see schemas/inferq.proto); logs go to stderr.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
