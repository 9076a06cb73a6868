"""`python -m infra.watchdog PID SIGNAL`: send SIGNAL to PID when our stdin reaches its end.

For a process the launcher did not start itself and so cannot give a parent-death signal
(pgserver's postmaster, daemonised by pg_ctl): the launcher holds the other end of our stdin, and
the kernel closes it when the launcher ends, however it ends (SIGKILL included). Standard library
only, to start fast.
"""

from __future__ import annotations

import os
import signal
import sys


def start_time(pid: int) -> str | None:
    """The process's start time (/proc/PID/stat, field 22): tells it from a later one that
    reuses its pid."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def main() -> None:
    pid, sig = int(sys.argv[1]), signal.Signals(int(sys.argv[2]))
    started = start_time(pid)
    for terminal in (signal.SIGINT, signal.SIGHUP):  # the launcher's to act on, not ours
        signal.signal(terminal, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    if started is not None and start_time(pid) == started:
        os.kill(pid, sig)


if __name__ == "__main__":
    main()
