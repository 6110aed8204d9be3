"""actord.ids: PIDs parsed once (any spelling, one canonical form), names checked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actord import ids
from actord.errors import InvalidError

hosts = st.from_regex(r"[a-z][a-z0-9_.\-]{0,8}:[a-z][a-z0-9_.\-]{0,8}", fullmatch=True)
serials = st.integers(min_value=0, max_value=2**64 - 1)


@given(hosts, serials, st.integers(min_value=0, max_value=4), st.booleans())
def test_every_spelling_is_the_canonical_pid(host: str, serial: int, zeros: int,
                                              upper: bool) -> None:
    """Short, zero-padded and upper-case hex spellings all canonicalise to format_pid."""
    digits = ("0" * zeros + f"{serial:x}")[-16:]  # at most 16 digits: trims only zeros
    spelling = f"{{{host}|0{'X' if upper else 'x'}{digits.upper() if upper else digits}}}"
    assert ids.canonical_pid(spelling) == ids.format_pid(host, serial)
    assert ids.canonical_pid(ids.format_pid(host, serial)) == ids.format_pid(host, serial)
    assert ids.parse_pid(spelling) == (host, serial)


@pytest.mark.parametrize("bad", [
    "{garbage", "{}", "{t:a|0x}", "{t:a|3}", "{t:a|0xg0000}", "t:a|0x00001",
    "{t:a|0x00001", "{t|a|0x00001}", "{t\na|0x00001}", "{t:a|0x" + "1" * 17 + "}", "", 5, None,
])
def test_malformed_pids_are_invalid(bad: object) -> None:
    """Anything that is not {host|0xHEX} is INVALID, never a quiet dead letter."""
    with pytest.raises(InvalidError, match="malformed PID"):
        ids.canonical_pid(bad)
    assert not ids.is_pid(bad)


@pytest.mark.parametrize(("name", "ok"), [
    ("db", True), ("global db 1", True), ("n" * 255, True), ("名前", True),
    ("", False), ("{x", False), ("n" * 256, False), ("a\nb", False), ("a\tb", False),
    ("a\x00b", False), ("a\x1b[31m", False), (5, False), (None, False),
])
def test_names_are_printable_and_bounded(name: object, ok: bool) -> None:
    """Registry names: 1-255 printable characters, not starting with {."""
    assert ids.is_name(name) is ok
    if ok:
        assert ids.check_name(name) == name
    else:
        with pytest.raises(InvalidError, match="bad name"):
            ids.check_name(name)


def test_a_clustered_pid_names_its_node() -> None:
    """{node@host|0x...} is a PID like any other; split_host tells node and host apart."""
    pid = ids.format_pid("n1@app:main", 0x1A23C272EB000001)
    assert pid == "{n1@app:main|0x1a23c272eb000001}"
    assert ids.canonical_pid(pid) == pid and ids.is_pid(pid)
    assert ids.canonical_pid("{n1@app:main|0X1}") == "{n1@app:main|0x00001}"
    host, _ = ids.parse_pid(pid) or ("", 0)
    assert ids.split_host(host) == ("n1", "app:main")
    assert ids.split_host("app:main") == (None, "app:main")
