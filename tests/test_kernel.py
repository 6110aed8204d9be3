"""actord.kernel: the actor API stands on the kernel interface alone; the worker implements it."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from typing import Any

import pytest

from actord import kernel, values
from actord.errors import InvalidError
from actord.kernel import Kernel, ProcessState
from actord.worker.proc import Proc
from actord.worker.runtime import Runtime


def _loaded_after(module: str) -> list[str]:
    """The actord modules a fresh interpreter has loaded after importing ``module``."""
    code = (f"import sys, {module}; "
            "print(' '.join(m for m in sys.modules if m.startswith('actord')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=True)
    return r.stdout.split()


@pytest.mark.parametrize("api", ["actord.process", "actord.ctx", "actord.supervisor"])
def test_the_api_loads_neither_the_worker_nor_the_transport(api: str) -> None:
    """Importing an API module loads no ``actord.worker`` module and not ``actord.transport``."""
    loaded = _loaded_after(api)
    assert api in loaded
    assert [m for m in loaded if m.startswith("actord.worker") or m == "actord.transport"] == []


def _members(protocol: type) -> set[str]:
    """The attributes and methods a Protocol declares."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n, v in vars(protocol).items() if inspect.isfunction(v)}
    return {n for n in names if not n.startswith("_")}


def test_the_worker_runtime_is_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call of ``Kernel`` is a method of the worker's ``Runtime`` with at least the
    parameters the API passes; a Runtime installs itself as the kernel when made."""
    for name in _members(Kernel) - {"max_frame"}:
        ours = inspect.signature(getattr(Kernel, name)).parameters
        theirs = inspect.signature(getattr(Runtime, name)).parameters
        assert list(theirs)[: len(ours)] == list(ours), name

    async def make() -> Runtime:
        return Runtime(None, "t:a", 0, max_frame=4096)  # type: ignore[arg-type]

    monkeypatch.setattr(kernel, "installed", None)
    rt = asyncio.run(make())
    assert kernel.installed is rt
    assert rt.max_frame == 4096


def test_the_worker_process_is_a_process_state() -> None:
    """Every attribute and method of ``ProcessState`` exists on the worker's ``Proc``."""
    for name in _members(ProcessState):
        assert name in Proc.__slots__ or callable(getattr(Proc, name, None)), name


@pytest.mark.parametrize("topic", ["", "@x", 5, None, b"t"])
def test_a_bad_topic_is_invalid(topic: Any) -> None:
    """A topic is a non-empty str not starting with ``@``."""
    with pytest.raises(InvalidError):
        values.check_topic(topic)


@pytest.mark.parametrize(("args", "payload"), [((), None), ((1,), 1), ((1, "a"), [1, "a"]),
                                               (([1],), [1])])
def test_send_values_make_one_payload(args: tuple[Any, ...], payload: Any) -> None:
    """No value: None; one value: itself; several: a list of them."""
    assert values.check_topic("t") == "t"
    assert values.payload(args) == payload
