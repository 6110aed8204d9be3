"""The link/monitor graph the router owns: given an exit, who must hear of it.

Responsibility: record monitors (one-way, watcher -> target) and links (two-way) between PIDs,
and on a PID's exit say which watchers get EXIT and which partners get LINK_DOWN (SPEC 4.4).

Invariant: every edge is stored on both of its ends, so the three indexes always agree; an
``exit`` removes every edge touching the PID in O(edges of that PID), reports each watcher and
each partner exactly once, and leaves no trace of the PID. Once every PID has exited the graph
is empty (``len(topology) == 0``).

PIDs are opaque strings here; whether a PID is alive is the router's business, not this
module's. The dicts below are used as insertion-ordered sets (values are always ``None``), so
fallout order is the order in which monitors and links were installed.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

__all__ = ["Fallout", "Topology"]


class Fallout(NamedTuple):
    """Who to notify for one exit; each PID appears at most once in each field.

    ``monitors`` get one EXIT each, in the order their monitors were installed. ``links`` get
    one LINK_DOWN each, in link order, and is empty when the exit was normal. (A named tuple:
    one is built per exit, and a tuple is the cheapest immutable record to build.)
    """

    monitors: tuple[str, ...] = ()
    links: tuple[str, ...] = ()


_NO_FALLOUT = Fallout()
# a Fallout from a (monitors, links) pair, all in C (no Python-level __new__ per exit)
_new_fallout = partial(tuple.__new__, Fallout)


class Topology:
    """Monitors and links between PIDs, indexed from both ends for O(1) updates."""

    __slots__ = ("_links", "_watchers", "_watching")

    def __init__(self) -> None:
        # target -> watchers of it, in install order
        self._watchers: dict[str, dict[str, None]] = {}
        # watcher -> targets it watches, in install order
        self._watching: dict[str, dict[str, None]] = {}
        # pid -> link partners, in link order; symmetric: b in _links[a] iff a in _links[b]
        self._links: dict[str, dict[str, None]] = {}

    # -- monitors ----------------------------------------------------------------------------

    def monitor(self, watcher: str, target: str) -> bool:
        """Install ``watcher``'s monitor of ``target``; False if it is already installed.

        ``watcher == target`` is allowed: that PID is then listed among its own watchers.
        """
        watchers = self._watchers.get(target)
        if watchers is None:
            self._watchers[target] = {watcher: None}
        elif watcher in watchers:
            return False
        else:
            watchers[watcher] = None
        # (get, not setdefault: setdefault would build a throwaway dict on every call)
        targets = self._watching.get(watcher)
        if targets is None:
            self._watching[watcher] = {target: None}
        else:
            targets[target] = None
        return True

    def unmonitor(self, watcher: str, target: str) -> bool:
        """Remove ``watcher``'s monitor of ``target``; idempotent, True if it existed."""
        watchers = self._watchers.get(target)
        if watchers is None or watcher not in watchers:
            return False
        _discard(self._watchers, target, watcher)
        _discard(self._watching, watcher, target)
        return True

    def monitors_of(self, target: str) -> tuple[str, ...]:
        """The watchers of ``target``, in install order."""
        return tuple(self._watchers.get(target, ()))

    def monitoring(self, watcher: str) -> tuple[str, ...]:
        """The targets ``watcher`` monitors, in install order."""
        return tuple(self._watching.get(watcher, ()))

    # -- links -------------------------------------------------------------------------------

    def link(self, a: str, b: str) -> bool:
        """Link ``a`` and ``b`` both ways; False if already linked or ``a == b`` (a no-op)."""
        if a == b:
            return False
        partners = self._links.setdefault(a, {})
        if b in partners:
            return False
        partners[b] = None
        self._links.setdefault(b, {})[a] = None
        return True

    def unlink(self, a: str, b: str) -> bool:
        """Remove the link between ``a`` and ``b``; idempotent, True if it existed."""
        partners = self._links.get(a)
        if partners is None or b not in partners:
            return False
        _discard(self._links, a, b)
        _discard(self._links, b, a)
        return True

    def links_of(self, pid: str) -> tuple[str, ...]:
        """The link partners of ``pid``, in link order."""
        return tuple(self._links.get(pid, ()))

    # -- several nodes (SPEC 11) --------------------------------------------------------------

    def neighbours(self, pid: str) -> set[str]:
        """Every PID at the other end of an edge of ``pid`` (its watchers, whom it watches,
        its link partners)."""
        return (self._watchers.get(pid, {}).keys() | self._watching.get(pid, {}).keys()
                | self._links.get(pid, {}).keys())

    def pids_with_prefix(self, prefix: str) -> list[str]:
        """Every PID with an edge whose string starts with ``prefix`` (e.g. ``"{n2@"``: the
        PIDs of node n2), in no particular order. O(PIDs with edges): for a node going down."""
        keys = self._watchers.keys() | self._watching.keys() | self._links.keys()
        return [p for p in keys if p.startswith(prefix)]

    # -- exit --------------------------------------------------------------------------------

    def exit(self, pid: str, abnormal: bool) -> Fallout:
        """``pid`` ended: return who to notify and remove every edge touching ``pid``.

        Partners are listed in ``links`` only when ``abnormal``; the links are removed either
        way. A second exit of the same PID (or of one with no edges) returns an empty Fallout.
        """
        watchers = self._watchers.pop(pid, None)
        watching = self._watching.pop(pid, None)
        partners = self._links.pop(pid, None)
        if watchers is None and watching is None and partners is None:
            return _NO_FALLOUT

        # the other end of every edge goes too (``_discard`` inlined: this runs per exit)
        if watchers:
            watching_index = self._watching
            for watcher in watchers:
                if watcher != pid:  # a self-monitor's other end was popped above
                    targets = watching_index[watcher]
                    del targets[pid]
                    if not targets:
                        del watching_index[watcher]
        if watching:
            watchers_index = self._watchers
            for target in watching:
                if target != pid:
                    others = watchers_index[target]
                    del others[pid]
                    if not others:
                        del watchers_index[target]
        if partners:
            links_index = self._links
            for partner in partners:
                theirs = links_index[partner]
                del theirs[pid]
                if not theirs:
                    del links_index[partner]

        links = tuple(partners) if (abnormal and partners) else ()
        return _new_fallout((tuple(watchers) if watchers else (), links))

    def __len__(self) -> int:
        """The number of PIDs with any edge; 0 once every PID has exited."""
        return len(self._watchers.keys() | self._watching.keys() | self._links.keys())

    def __repr__(self) -> str:
        return (
            f"<Topology pids={len(self)} monitors={sum(map(len, self._watchers.values()))} "
            f"links={sum(map(len, self._links.values())) // 2}>"
        )


def _discard(index: dict[str, dict[str, None]], key: str, member: str) -> None:
    """Remove ``member`` from ``index[key]``, dropping the key when its set becomes empty.

    Dropping empty sets is what keeps ``len(Topology)`` an exact leak check.
    """
    members = index.get(key)
    if members is None:
        return
    members.pop(member, None)
    if not members:
        del index[key]
