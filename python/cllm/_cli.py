"""The `cllm` console script of the wheel: runs the `cllm` executable shipped in the package."""
import os
import sys

from .engine import worker_executable


def main() -> None:
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "cllm")
    if not os.access(exe, os.X_OK):
        exe = worker_executable() or exe
    os.execv(exe, [exe] + sys.argv[1:])
