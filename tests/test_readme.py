"""Every fenced code block of README.md runs as printed, or says why not (issue 11, must-show 5).

A block is a fenced code block of README.md. How it is tested follows from its language and
from its marker, an HTML comment on the last non-blank line before the opening fence (any
HTML comment there must be one of these):

    <!-- not run in tests: REASON -->
        not run; REASON says why (needs root or systemd, a 3-minute run, ...).
    <!-- test: group=NAME[,NAME...]; skip CMD[,CMD...]: REASON -->
        both clauses optional. ``group``: the groups (GROUPS below) the block belongs to;
        ``skip`` (sh only): commands whose first word is a CMD are not run, for REASON.

By language:
    text    a diagram or sample output: nothing to run. A fence without a language fails
            (write ``text``); any language without a runner here needs a not-run marker.
    toml    merged over its group's base config and the group's earlier toml blocks (tables
            merged key by key, arrays of tables appended); the result must pass ``actord
            check-config``. Default: a group of its own, no base. Only what is machine-specific
            is adapted: absolute paths are re-rooted in the group's temp dir (``/opt/myapp`` ->
            ``TMP/opt/myapp``); relative ``python_path`` entries are resolved against the file
            the block's first comment names (``# /etc/actord/actord.toml``, re-rooted) or else
            ``TMP/config/actord.toml``; python_path directories in the temp dir are created and
            get every python block of the README, plus the group's glue files.
    python  its first line is a comment naming its file (``# myapp/handlers.py``): it is
            written at that path in every python_path directory (above). It must belong to a
            group with a scenario (SCENARIOS), which starts a daemon on the group's config plus
            the group's glue and exercises the code.
    sh      default group ``shipped`` (config/actord.toml with its socket in a temp dir). Each
            command (``\\`` continuations joined; comment lines skipped) runs in bash, in order,
            against the group's daemon (``ACTORD_SOCKET``), in a directory laid out like the
            repo whose ``.venv/bin/actord`` and ``.venv/bin/python`` run this interpreter (and
            ``actord`` is on PATH). It must exit 0, or N when its comment ends with ``exit N``;
            a comment ``prints TEXT`` (optionally ``, exit N``) means TEXT is in its stdout; no
            output holds a traceback. After ``actord shutdown`` the daemon must exit 0, and the
            next command gets a fresh one.

So a new toml block, or a new sh line for the shipped config, needs nothing; another kind of
example needs a marker (and, for new code, a group with glue and a scenario below).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actord.testing import Daemon, wait_for

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SHIPPED = ROOT / "config" / "actord.toml"
GLUE = Path(__file__).parent / "actors" / "readme_glue.py"

FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"^<!--\s*(.*?)\s*-->$")
RUNNERS = ("toml", "python", "sh")


# -- the README's blocks and markers ---------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """A block's marker, parsed (the defaults: no marker)."""

    not_run: str | None = None
    groups: tuple[str, ...] = ()
    skip: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Block:
    """One fenced block: ``line`` is its opening fence's line (1-based)."""

    line: int
    lang: str
    text: str
    marker: str | None

    @property
    def name(self) -> str:
        return f"README.md:{self.line}:{self.lang or '-'}"

    @property
    def mark(self) -> Mark:
        """The parsed marker; ``ValueError`` if it is malformed."""
        text = self.marker
        if text is None:
            return Mark()
        if not text.startswith(("test:", "not run in tests")):
            raise ValueError(f"an HTML comment before a fence must be a marker: {text!r}")
        if text.startswith("not run in tests"):
            reason = text.partition(":")[2].strip()
            if not reason:
                raise ValueError("a not-run marker needs a reason: <!-- not run in tests: WHY -->")
            return Mark(not_run=reason)
        groups: tuple[str, ...] = ()
        skip: frozenset[str] = frozenset()
        for clause in filter(None, (c.strip() for c in text[5:].split(";"))):
            if m := re.fullmatch(r"group=([\w:-]+(?:,[\w:-]+)*)", clause):
                groups = tuple(m[1].split(","))
            elif m := re.fullmatch(r"skip ([^:]+):\s*(\S.*)", clause):
                skip = frozenset(c.strip() for c in m[1].split(","))
            else:
                raise ValueError(f"bad marker clause {clause!r}")
        return Mark(groups=groups, skip=skip)

    @property
    def groups(self) -> tuple[str, ...]:
        """The block's groups, defaults applied."""
        default = {"sh": ("shipped",), "toml": (f"L{self.line}",)}.get(self.lang, ())
        return self.mark.groups or default

    @property
    def named_path(self) -> str | None:
        """The path its first line's comment names (``# myapp/handlers.py``), if any."""
        m = re.fullmatch(r"#\s*(\S+\.(?:py|toml))\s*", self.text.split("\n", 1)[0])
        return m[1] if m else None


def parse_readme(text: str) -> list[Block]:
    """Every fenced block of ``text``, in order."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```"), None)
        assert end is not None, f"README.md:{i + 1}: fence never closed"
        before = next((s.strip() for s in reversed(lines[:i]) if s.strip()), "")
        marker = MARKER.match(before)
        blocks.append(Block(i + 1, m[1], "\n".join(lines[i + 1:end]) + "\n",
                            marker[1] if marker else None))
        i = end + 1
    return blocks


BLOCKS = parse_readme(README.read_text())


def runs(block: Block) -> bool:
    """True if the block is run (parsing errors are reported by the coverage test)."""
    try:
        return block.lang in RUNNERS and block.mark.not_run is None
    except ValueError:
        return False


# -- groups: the configs and daemons the blocks run in ---------------------------------------------


@dataclass(frozen=True)
class Group:
    """A config the group's toml blocks are merged over, plus test-only glue for its scenario."""

    base: Path | None = None
    glue_toml: str = ""
    glue_files: tuple[Path, ...] = ()


#: a probe process that talks to the README's process example
PROCESS_GLUE = """
[processes."readme:ask"]
entry = "readme_glue:ask"
"""

#: what the supervisor examples name but leave to the reader: the children's process ids and
#: host (run by the README's own handler), an id for the python example, a probe
SUPERVISOR_GLUE = """
[hosts."app:web"]
workers = 1

[processes."app.workers:db"]
entry = "myapp.handlers:main"

[processes."app.workers:web"]
entry = "myapp.handlers:main"

[processes."readme:sup"]
entry = "myapp.sup:main"

[processes."readme:children"]
entry = "readme_glue:children"
"""

GROUPS: dict[str, Group] = {
    "shipped": Group(base=SHIPPED),
    "security": Group(base=SHIPPED),
    "process": Group(glue_toml=PROCESS_GLUE, glue_files=(GLUE,)),
    "supervisor": Group(glue_toml=SUPERVISOR_GLUE, glue_files=(GLUE,)),
}


def group_of(name: str) -> Group:
    """A named group, or the ad-hoc group of a toml block with no marker (``L<line>``)."""
    if name in GROUPS:
        return GROUPS[name]
    if re.fullmatch(r"L\d+", name):
        return Group()
    raise KeyError(f"unknown group {name!r} (see GROUPS in tests/test_readme.py)")


def deep_merge(into: dict[str, Any], over: dict[str, Any]) -> None:
    """TOML's meaning of writing ``over`` after ``into``: tables merge, arrays of tables append."""
    for key, value in over.items():
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            deep_merge(old, value)
        elif isinstance(old, list) and old and isinstance(old[0], dict) and isinstance(value, list):
            into[key] = old + value
        else:
            into[key] = value


def reroot(value: Any, root: Path) -> Any:
    """``value`` with every absolute path string moved under ``root``."""
    if isinstance(value, dict):
        return {k: reroot(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [reroot(v, root) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return str(root / value.lstrip("/"))
    return value


def to_toml(data: dict[str, Any]) -> str:
    """``data`` (what ``tomllib`` returns, without dates) as TOML text."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(map(value, v)) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(f"no TOML for {v!r}")

    out: list[str] = []

    def table(path: list[str], t: dict[str, Any]) -> None:
        plain = {k: v for k, v in t.items() if not isinstance(v, dict)}
        if path and (plain or len(plain) == len(t)):
            out.append("[" + ".".join(map(json.dumps, path)) + "]")
        out.extend(f"{json.dumps(k)} = {value(v)}" for k, v in plain.items())
        for k, v in t.items():
            if isinstance(v, dict):
                table([*path, k], v)

    table([], data)
    return "\n".join(out) + "\n"


class Workspace:
    """Temp dirs, configs and daemons of the groups, for one test module."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.daemons: dict[str, Daemon] = {}
        self.starts = 0

    def root(self, group: str) -> Path:
        """The group's temp dir (``TMP`` in the module docstring)."""
        path = self.tmp / group.replace(":", "_")
        path.mkdir(exist_ok=True)
        return path

    def config(self, group: str, upto: Block | None = None) -> dict[str, Any]:
        """The group's config: base, its toml blocks (up to ``upto``, else all + glue)."""
        root, spec = self.root(group), group_of(group)
        cfg: dict[str, Any] = {}
        if spec.base is not None:
            cfg = tomllib.loads(spec.base.read_text())
            self._resolve_paths(cfg, spec.base.parent)
        for block in (b for b in BLOCKS if b.lang == "toml" and group in b.groups and runs(b)):
            data = reroot(tomllib.loads(block.text), root)
            where = reroot(block.named_path or "/config/actord.toml", root)
            self._resolve_paths(data, Path(where).parent)
            deep_merge(cfg, data)
            if block is upto:
                break
        else:
            deep_merge(cfg, tomllib.loads(spec.glue_toml))
        self._make_paths_exist(cfg, root, spec)
        return cfg

    @staticmethod
    def _resolve_paths(cfg: dict[str, Any], base: Path) -> None:
        daemon = cfg.get("daemon", {})
        if "python_path" in daemon:
            daemon["python_path"] = [os.path.normpath(base / p) for p in daemon["python_path"]]

    @staticmethod
    def _make_paths_exist(cfg: dict[str, Any], root: Path, spec: Group) -> None:
        """python_path dirs (with the README's python files and the glue) and the socket's dir."""
        daemon = cfg.get("daemon", {})
        for entry in map(Path, daemon.get("python_path", [])):
            if not entry.resolve().is_relative_to(root.resolve()):
                continue  # the repo's own (a base config's examples/)
            for block in BLOCKS:
                if block.lang == "python" and block.named_path:
                    target = entry / block.named_path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(block.text)
            entry.mkdir(parents=True, exist_ok=True)
            for glue in spec.glue_files:
                (entry / glue.name).write_text(glue.read_text())
        if "socket" in daemon and Path(daemon["socket"]).is_relative_to(root):
            Path(daemon["socket"]).parent.mkdir(parents=True, exist_ok=True)

    def daemon(self, group: str) -> Daemon:
        """The group's running daemon (started now if none is running)."""
        d = self.daemons.get(group)
        if d is not None and d.proc is not None and d.proc.poll() is None:
            return d
        cfg = self.config(group)
        cfg.setdefault("daemon", {})["socket"] = "@SOCKET@"
        self.starts += 1
        d = Daemon(self.root(group) / f"daemon{self.starts}", to_toml(cfg))
        self.daemons[group] = d
        return d.start()

    def sandbox(self) -> Path:
        """A directory laid out like the repo; ``.venv/bin`` runs this interpreter."""
        box = self.tmp / "repo"
        if not box.exists():
            box.mkdir()
            for entry in ROOT.iterdir():
                if entry.name not in (".venv", ".git"):
                    (box / entry.name).symlink_to(entry)
            bin_dir = box / ".venv" / "bin"
            bin_dir.mkdir(parents=True)
            python = shlex.quote(sys.executable)
            for name, argv in (("actord", f"{python} -m actord"), ("python", python)):
                (bin_dir / name).write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
                (bin_dir / name).chmod(0o755)
        return box

    def close(self) -> None:
        """Stop the daemons still running; each must exit 0."""
        for d in self.daemons.values():
            if d.proc is not None and d.proc.poll() is None:
                assert d.stop() == 0, d.log()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The module's workspace; its daemons are stopped (and must exit 0) at the end."""
    w = Workspace(tmp_path_factory.mktemp("readme"))
    yield w
    w.close()


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """``actord check-config PATH``."""
    return subprocess.run([sys.executable, "-m", "actord", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


def cli_popen(d: Daemon, *args: str) -> subprocess.Popen[str]:
    """``actord ARGS`` against ``d``, running in the background."""
    return subprocess.Popen([sys.executable, "-m", "actord", *args], text=True,
                            env={**os.environ, "ACTORD_SOCKET": d.socket},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def pids_of(d: Daemon, *ids: str) -> list[str]:
    """PIDs of the live processes of these process ids."""
    return [r["pid"] for r in d.call("ps") if r["id"] in ids]


def python_block(path: str) -> Block:
    """The README's python block that names ``path``."""
    return next(b for b in BLOCKS if b.lang == "python" and b.named_path == path)


# -- scenarios: the python examples, run -----------------------------------------------------------


def scenario_process(d: Daemon) -> None:
    """A CLI message (no sender), a reply to a process, idling past the select timeout, CANCEL."""
    run = cli_popen(d, "exec", "app.workers:handler", "app:processes", '"hello"', "--json")
    try:
        pid = wait_for(lambda: pids_of(d, "app.workers:handler"), what="the handler")[0]
        assert d.cli("send", pid, "hi", '"from the CLI"').returncode == 0
        assert d.exec("readme:ask", "app:processes", pid, "hi", "there", timeout=10) == [
            "reply", ["hello", "there"], pid]
        quiet_since = time.monotonic()
        select = re.search(r"timeout=([\d.]+)", python_block("myapp/handlers.py").text)
        idle = float(select[1]) + 1.0 if select else 0.0
        time.sleep(max(0.0, quiet_since + idle - time.monotonic()))  # what is tested: idling
        assert pids_of(d, "app.workers:handler") == [pid], d.log()
        assert d.exec("readme:ask", "app:processes", pid, "hi", 2, timeout=10) == [
            "reply", ["hello", 2], pid]
        assert d.cli("cancel", pid).returncode == 0
        out, err = run.communicate(timeout=10)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert (run.returncode, json.loads(out)) == (0, {"value": "stopped"}), err


def scenario_supervisor(d: Daemon) -> None:
    """The config's supervisor service and the code's supervisor each run their children."""
    def running(service: str) -> str | None:
        return next((s["pid"] for s in d.call("services")
                     if s["name"] == service and s["state"] == "running"), None)

    def children_run(sup: str) -> list[str]:
        kids = d.exec("readme:children", "app:processes", sup, timeout=10)
        assert [k[0] for k in kids] == ["db", "web"], kids
        pids = [k[1] for k in kids]
        return pids if None not in pids and set(pids) <= set(pids_of(d, *CHILD_IDS)) else []

    sup = wait_for(lambda: running("app:sup"), what="service app:sup running")
    db, _ = wait_for(lambda: children_run(sup), what="the service's children")
    assert d.call("registry")["db"] == db
    assert d.cli("stop", "app:sup").returncode == 0
    wait_for(lambda: not pids_of(d, *CHILD_IDS), what="children stopped with the service")

    run = cli_popen(d, "exec", "readme:sup", "app:processes", "--json")
    try:
        sup = wait_for(lambda: pids_of(d, "readme:sup"), what="the supervisor")[0]
        db, _ = wait_for(lambda: children_run(sup), what="the supervisor's children")
        assert d.call("registry")["db"] == db
        assert d.cli("cancel", sup).returncode == 0
        out, err = run.communicate(timeout=20)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert (run.returncode, json.loads(out)) == (0, {"value": None}), err
    wait_for(lambda: not pids_of(d, *CHILD_IDS), what="children stopped with the supervisor")


CHILD_IDS = ("app.workers:db", "app.workers:web")

SCENARIOS: dict[str, Callable[[Daemon], None]] = {
    "process": scenario_process,
    "supervisor": scenario_supervisor,
}


# -- sh: commands and what their comments promise --------------------------------------------------


@dataclass
class Command:
    """One command of a sh block and what its comment promises."""

    line: str
    code: int = 0
    prints: str | None = None
    word: str = field(init=False)

    def __post_init__(self) -> None:
        self.word = self.line.split()[0]


def split_comment(line: str) -> tuple[str, str]:
    """(command, comment): the comment starts at a ``#`` after a blank, outside quotes."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip(), line[i + 1:].strip()
    return line.strip(), ""


def commands(text: str) -> list[Command]:
    """The commands of a sh block, continuations joined, comment-only lines skipped."""
    out, pending = [], ""
    for raw in text.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line, comment = split_comment(pending + raw)
        pending = ""
        if not line:
            continue
        cmd = Command(line)
        if m := re.fullmatch(r"prints (.+?)(?:,\s*exit (\d+))?", comment):
            cmd.prints, cmd.code = m[1], int(m[2] or 0)
        elif m := re.search(r"(?:^|,\s*)exit (\d+)$", comment):
            cmd.code = int(m[1])
        out.append(cmd)
    return out


# -- the tests -------------------------------------------------------------------------------------


def problems_of(block: Block) -> list[str]:
    """Why ``block`` is neither run nor marked as not run (empty: it is handled)."""
    try:
        mark = block.mark
        groups = [(g, group_of(g)) for g in block.groups]
    except (ValueError, KeyError) as e:
        return [f"{block.name}: {e}"]
    if mark.not_run is not None or block.lang == "text":
        return []
    if not block.lang:
        return [f"{block.name}: a fence needs a language (text for diagrams and output)"]
    if block.lang not in RUNNERS:
        return [f"{block.name}: no runner for {block.lang!r}: mark <!-- not run in tests: WHY -->"]
    if block.lang == "sh" and (len(groups) != 1 or groups[0][0] not in GROUPS):
        return [f"{block.name}: a sh block runs in one group of GROUPS"]
    if mark.skip and block.lang != "sh":
        return [f"{block.name}: skip is for sh blocks"]
    if block.lang == "python":
        if not block.named_path:
            return [f"{block.name}: first line must be a comment naming its file (# myapp/x.py)"]
        if not any(g in SCENARIOS for g, _ in groups):
            return [f"{block.name}: needs <!-- test: group=NAME --> naming a group of SCENARIOS"]
    return []


def test_every_block_is_run_or_marked() -> None:
    """Every README block has a runner here or a marker saying why it is not run."""
    assert len(BLOCKS) > 10
    problems = [p for b in BLOCKS for p in problems_of(b)]
    assert not problems, "\n".join(problems)


def test_markers_and_commands_parse() -> None:
    """The marker and sh-comment syntax documented above parses as documented."""
    block = Block(1, "sh", "a \\\n  b '#x' # prints {\"e\": 1}, exit 1\n# c\nd # exit 2\n",
                  "test: group=shipped; skip systemctl, journalctl: need systemd")
    assert block.mark == Mark(groups=("shipped",), skip=frozenset({"systemctl", "journalctl"}))
    assert [(c.line, c.code, c.prints) for c in commands(block.text)] == [
        ("a    b '#x'", 1, '{"e": 1}'), ("d", 2, None)]
    assert Block(1, "sh", "", "not run in tests: needs root").mark.not_run == "needs root"
    for bad in ("not run in tests:", "test: group=", "test: frobnicate", "tests: group=x"):
        with pytest.raises(ValueError):
            _ = Block(1, "sh", "", bad).mark


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "toml" and runs(b)],
                         ids=lambda b: b.name)
def test_toml_block_passes_check_config(block: Block, ws: Workspace) -> None:
    """The block, in each of its groups, passes ``actord check-config``."""
    for group in block.groups:
        path = ws.root(group) / f"check-{block.line}.toml"
        cfg = ws.config(group, upto=block)
        path.write_text(to_toml(cfg))
        assert tomllib.loads(path.read_text()) == cfg  # check-config sees exactly these values
        done = check_config(path)
        assert done.returncode == 0 and ": ok (" in done.stdout, (group, done.stdout, done.stderr)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "sh" and runs(b)],
                         ids=lambda b: b.name)
def test_sh_block_runs(block: Block, ws: Workspace) -> None:
    """Each command runs against the group's daemon as its comment says."""
    (group,) = block.groups
    ran = 0
    for cmd in commands(block.text):
        if cmd.word in block.mark.skip:
            continue
        d = ws.daemon(group)
        env = {**os.environ, "ACTORD_SOCKET": d.socket,
               "PATH": f"{ws.sandbox() / '.venv' / 'bin'}:{os.environ['PATH']}"}
        done = subprocess.run(["bash", "-c", cmd.line], cwd=ws.sandbox(), env=env, text=True,
                              capture_output=True, timeout=60, check=False)
        what = f"{block.name}: {cmd.line}\n{done.stdout}{done.stderr}"
        assert done.returncode == cmd.code, what
        assert cmd.prints is None or cmd.prints in done.stdout, what
        assert "Traceback" not in done.stdout + done.stderr, what
        if re.search(r"\bactord\s+shutdown\b", cmd.line):
            assert d.proc is not None and d.proc.wait(30) == 0 and d.stop() == 0, d.log()
        ran += 1
    assert ran, f"{block.name}: every command skipped: mark the block not run instead"


@pytest.mark.parametrize("group", sorted({g for b in BLOCKS if b.lang == "python" and runs(b)
                                          for g in b.groups if g in SCENARIOS}))
def test_python_blocks_run_in_a_daemon(group: str, ws: Workspace) -> None:
    """The group's python blocks run in a daemon on the README's config, as the scenario says."""
    d = ws.daemon(group)
    SCENARIOS[group](d)
    assert "Traceback" not in d.log(), d.log()
