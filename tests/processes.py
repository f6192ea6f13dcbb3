"""Helpers for tests that start real processes (servers, workers)."""

import os
import signal
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


def signal_group(process: subprocess.Popen, sig: int) -> bool:
    """Send `sig` to the process group that `process` leads (started with start_new_session=True)."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGKILL the whole process group `process` leads (its children too), and reap the leader."""
    signal_group(process, signal.SIGKILL)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
        pass


def stop_process_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a process that leads its own group: SIGTERM to the leader (a Celery worker's warm
    shutdown), then SIGKILL whatever of the group is left (children, an embedded beat)."""
    stop_process(process, timeout=timeout)
    signal_group(process, signal.SIGKILL)
