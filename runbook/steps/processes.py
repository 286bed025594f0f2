"""Keeping a step's processes under control: nothing a step starts outlives it.

A command step runs in a session (and process group) of its own, with ``RUNBOOK_STEP_TOKEN`` in
its environment, which its descendants inherit. On Linux:

- the step's process gets SIGKILL if the thread that started it dies (``PR_SET_PDEATHSIG``): a
  controller killed with ``kill -9`` takes its steps with it, so a resumed run never executes a
  date twice at the same time;
- the controller is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): a descendant that escaped
  the group (``setsid``, a double fork) becomes its child when its parent exits, instead of
  init's, and :func:`end_leftovers` finds it by its token and ends it with the step.

Elsewhere these are no-ops and only the process group is ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Collection

KILL_GRACE_SECONDS = 5.0
PARENT_GONE_EXIT = 125  # a step whose starter died before it could run
TOKEN = "RUNBOOK_STEP_TOKEN"
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    function: Callable[..., int] = libc.prctl
    return function


_PRCTL = _prctl()


def become_subreaper() -> bool:
    """Adopt this process's orphaned descendants (Linux); True when it worked."""
    return _PRCTL is not None and _PRCTL(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def die_with_parent(parent: int) -> None:
    """``preexec_fn`` of a step: SIGKILL when the thread that started it dies (Linux).

    A parent that died between the fork and this call sends no signal: the child sees that its
    parent is no longer ``parent`` and ends before it runs anything. Only system calls between
    fork and exec: nothing that could take a lock of the parent.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(PARENT_GONE_EXIT)


def run_key(run_id: int, run_token: str) -> str:
    """What tells a run from every other on this machine: its number and a digest of when it was
    created (two workspaces, or a state store made anew, each have a run 1)."""
    return f"{run_id}-{hashlib.sha256(run_token.encode()).hexdigest()[:12]}"


def step_token(run: str, task_id: int | None) -> str:
    """The token a step carries in its environment: its run (:func:`run_key`), its task, the PID
    of the process that started it, and a nonce. Its descendants inherit it, escaped ones too."""
    return f"{run}.{task_id if task_id is not None else '-'}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def _parse_token(token: str) -> tuple[str, str, int] | None:
    parts = token.split(".")
    if len(parts) != 4:
        return None
    try:
        return parts[0], parts[1], int(parts[2])
    except ValueError:
        return None


def _state(pid: int) -> str | None:
    """The state letter of ``pid`` in ``/proc`` (``R``, ``S``, ``Z``, ...); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended: its files, and their locks, are released)."""
    return _state(pid) not in (None, "Z", "X")


def _processes() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def end_strays(run: str, tasks: Collection[int] = (), *, wait: float = KILL_GRACE_SECONDS) -> int:
    """End the steps of the run ``run`` (:func:`run_key`) on this machine that no live process of runbook follows:
    those whose starter has died (a controller or worker killed with -9 while they ran, or a
    descendant that escaped its group), and any whose task is in ``tasks`` (taken over from a
    holder whose lease ran out) that this process did not start. Wait until they are gone, so
    their dates can run again without ever running twice at once; return how many were ended."""
    me = os.getpid()
    wanted = {str(task) for task in tasks}
    ended: list[int] = []
    for pid in _processes():
        if pid == me:
            continue
        token = token_of(pid)
        parsed = _parse_token(token) if token else None
        if parsed is None or parsed[0] != run:
            continue
        _, task, starter = parsed
        if starter == me:
            continue
        if task in wanted or not _alive(starter):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                ended.append(pid)
    deadline = time.monotonic() + wait
    left = ended
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [pid for pid in left if _alive(pid)]
    return len(ended)


def kill_process_group(pid: int, grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left after ``grace`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _children() -> list[int]:
    """This process's children (Linux: every thread's ``children`` file)."""
    found: list[int] = []
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return found
    for thread in threads:
        try:
            with open(f"/proc/self/task/{thread}/children", encoding="ascii") as handle:
                found += [int(pid) for pid in handle.read().split()]
        except OSError:
            continue
    return found


def token_of(pid: int) -> str | None:
    """The step token in a process's environment, if it has one."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    marker = TOKEN.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(marker):
            return item[len(marker) :].decode(errors="replace")
    return None


def end_leftovers(pgid: int, token: str, *, spare: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    """End what a finished step left behind: its process group, and adopted orphans carrying its
    token. Return how many processes were signalled (the caller reaps them: see
    ``runbook.steps.command.reap_orphans``)."""
    ended = 0
    if group_alive(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
            ended += 1
    for pid in _children():
        if pid in spare or token_of(pid) != token:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            ended += 1
    return ended


def reap(spare: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    """Collect the exit status of adopted orphans that have ended (not the steps' own processes,
    whose status their Popen objects collect)."""
    for pid in _children():
        if pid in spare:
            continue
        if _state(pid) == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
