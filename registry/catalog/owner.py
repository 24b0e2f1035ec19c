"""Which process wrote a temp file, recorded in its name, so that a sweep can tell a live
upload from a crashed one.

An owner is `<pid>.<start>.<boot>.<host>`: the process id, its start time in clock ticks since
boot (so a reused pid is not mistaken for the writer), the first 12 hex digits of the kernel's
boot id and 8 of a hash of the host name (so a replica on another machine, or in another
container with its own pid numbering, is never judged by this one's process table). Read from
/proc: where there is none, no owner is recorded and the age rule alone decides.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
from pathlib import Path
from typing import Final

from registry.catalog.sweep import OwnerState

PATTERN: Final = re.compile(r"(\d+)\.(\d+)\.([0-9a-f]{12})\.([0-9a-f]{8})")
_PROC: Final = Path("/proc")


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (after the command name, which may hold spaces)."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 else None


@functools.cache
def _machine() -> tuple[str, str] | None:
    """(boot, host) of this machine and container, or None without /proc."""
    try:
        boot = (_PROC / "sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    except OSError:
        return None
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()
    return boot[:12], host[:8]


def this_process() -> str | None:
    """The owner to put in the names of the temp files this process writes."""
    machine = _machine()
    pid = os.getpid()
    start = _start_ticks(pid)
    if machine is None or start is None:
        return None
    return f"{pid}.{start}.{machine[0]}.{machine[1]}"


def owner_in(name: str) -> str | None:
    """The owner a file name carries (`upload-<owner>-...`), if any."""
    found = PATTERN.search(name)
    return found[0] if found else None


def owner_state(owner: str | None) -> OwnerState:
    """LIVE or DEAD for an owner on this host and boot; UNKNOWN for anything else."""
    found = None if owner is None else PATTERN.fullmatch(owner)
    machine = _machine()
    if found is None or machine is None or (found[3], found[4]) != machine:
        return OwnerState.UNKNOWN
    alive = _start_ticks(int(found[1])) == int(found[2])
    return OwnerState.LIVE if alive else OwnerState.DEAD
