"""Stop a ``logitlens`` command inside an atomic rewrite, the moment a crash would hurt most.

The child runs with ``LOGITLENS_PAUSE_IN_REWRITE`` set (see ``logitlens.storage``): it
creates the marker file and waits just before renaming the new file into place. The
test then sends SIGKILL or SIGINT. The child resets SIGINT to its default before
Python starts, so Ctrl-C reaches it even when the test runner ignores SIGINT (a test
run started in the background), and it runs in a session of its own, so the signal
reaches the child only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import logitlens

SRC = Path(logitlens.__file__).resolve().parents[1]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_inside_rewrite(
    args: list[str], marker: Path, signum: int, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``logitlens ARGS``, send ``signum`` inside its first atomic rewrite; its result.

    Fails the test if the child never reaches a rewrite (it finished or failed first).
    """
    env = {**os.environ, "PYTHONPATH": str(SRC), "LOGITLENS_PAUSE_IN_REWRITE": str(marker)}
    env.pop("LOGITLENS_DEBUG", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "logitlens", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            out, err = child.communicate()
            raise AssertionError(f"the command never reached a rewrite:\n{out}\n{err}")
        time.sleep(0.02)
    child.send_signal(signum)
    out, err = child.communicate(timeout=120)
    marker.unlink(missing_ok=True)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)
