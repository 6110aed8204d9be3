"""The name registry: which PID holds each registered name.

Responsibility: map names to PIDs (one PID may hold many names, a name has one holder) and
release a PID's names when it ends (SPEC 3, ``registry.*``, and SPEC 4.4).

Invariant: the forward index (name -> PID) and the reverse index (PID -> names) always
describe the same pairs, so ``release`` costs O(names of that PID) and, once the router has
released an ended PID, no name points at it.
"""

from __future__ import annotations

from actord.errors import AlreadyExistsError

__all__ = ["Registry"]


class Registry:
    """Names to PIDs, with a reverse index; names of a PID are kept in registration order."""

    __slots__ = ("_holder", "_names")

    def __init__(self) -> None:
        self._holder: dict[str, str] = {}
        # pid -> its names, an insertion-ordered set; a PID with no names has no key
        self._names: dict[str, dict[str, None]] = {}

    def register(self, name: str, pid: str) -> bool:
        """Give ``name`` to ``pid``; True if new, False if ``pid`` already holds it (no-op).

        Raises AlreadyExistsError when another PID holds ``name``.
        """
        holder = self._holder.get(name)
        if holder == pid:
            return False
        if holder is not None:
            raise AlreadyExistsError(f"name {name!r} is already registered to {holder}")
        self._holder[name] = pid
        self._names.setdefault(pid, {})[name] = None
        return True

    def lookup(self, name: str) -> str | None:
        """The PID holding ``name``, or None."""
        return self._holder.get(name)

    def unregister(self, name: str) -> bool:
        """Remove ``name``; idempotent, True if it was registered."""
        pid = self._holder.pop(name, None)
        if pid is None:
            return False
        names = self._names[pid]
        del names[name]
        if not names:
            del self._names[pid]
        return True

    def release(self, pid: str) -> tuple[str, ...]:
        """Remove every name of ``pid`` (it ended) and return them in registration order."""
        names = self._names.pop(pid, None)
        if names is None:
            return ()
        for name in names:
            del self._holder[name]
        return tuple(names)

    def names_of(self, pid: str) -> tuple[str, ...]:
        """The names ``pid`` holds, in registration order."""
        return tuple(self._names.get(pid, ()))

    def snapshot(self) -> dict[str, str]:
        """A copy of the name -> PID map, in registration order."""
        return dict(self._holder)

    def __len__(self) -> int:
        """The number of registered names."""
        return len(self._holder)

    def __repr__(self) -> str:
        return f"<Registry names={len(self._holder)} pids={len(self._names)}>"
