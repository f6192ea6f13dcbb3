"""Helpers for tests that start real processes (servers, workers)."""

import subprocess


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate, then kill if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
