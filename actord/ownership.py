"""Who owns a control socket path: the daemon lock, the stale-socket check, the bound socket.

One daemon per socket path: ``acquire_lock`` takes ``<socket>.lock`` for the life of the
process, ``prepare_socket_path`` refuses a socket someone listens on and removes a stale one,
and ``remove_own_socket`` unlinks the socket at exit only if it is still the one this daemon
bound (its ``socket_identity``). Invariant: no daemon removes a socket or lock file another
live daemon uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket

log = logging.getLogger("actord.daemon")  # its lines read as the daemon's, as before the move


class SocketInUseError(Exception):
    """Another live daemon owns the control socket."""


def prepare_socket_path(path: str) -> None:
    """Create the socket's directory; refuse a live socket, remove a stale one."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # stale: nobody listens
        return
    finally:
        probe.close()
    raise SocketInUseError(f"{path}: another actord daemon is running")


class DaemonLockedError(SocketInUseError):
    """Another live daemon holds the lock of this socket path."""


def lock_path(socket_path: str) -> str:
    """The lock file of a control socket: ``<socket>.lock``, beside it."""
    return socket_path + ".lock"


def acquire_lock(socket_path: str) -> int:
    """Take the daemon lock of ``socket_path`` (creating its directory); its open fd.

    ``flock`` on ``<socket>.lock``, never waiting: ``DaemonLockedError`` names the holder's
    PID (written in the file by the holder). The fd is close-on-exec (workers do not inherit
    it) and stays open until the process exits, so the lock is held past the last clean-up
    step; the file itself is never removed (removing a lock file races with a daemon opening
    it), and a PID left in it is read only while someone holds the lock.
    """
    path = lock_path(socket_path)
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DaemonLockedError(f"another actord daemon (pid {holder}) holds {path}") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def socket_identity(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the file at ``path``, None if there is none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def remove_own_socket(path: str, bound: tuple[int, int] | None) -> None:
    """Unlink ``path`` only if it is still the socket this daemon bound (``bound``)."""
    if bound is not None and socket_identity(path) == bound:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    elif socket_identity(path) is not None:
        log.warning("%s is no longer the socket this daemon created; left in place", path)
