"""The shape of relaychat/ itself: no import cycles, modules one person can hold,
one definition of each wire line, nickname rule and protocol constant."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

PACKAGE = Path(__file__).resolve().parents[1] / "relaychat"
MAX_LINES = 600
# Modules allowed over MAX_LINES (issue 12, point "modules <= ~600 lines"):
# none now (server/hub.py, cluster/node.py and client/channel.py were split by
# what they hold). An entry would be a debt to split by what it holds; the test
# fails for any other module, or if one grows.
OVER_THE_LIMIT: dict[str, int] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every relaychat module ``name`` imports when run, at module level or inside
    functions (a function-level import hides a cycle, it does not remove it);
    only ``if TYPE_CHECKING:`` blocks are left out, as they never run."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # "from relaychat.wire import messages" depends on that module; a
                # package's __init__ runs first, but that is not a cycle of ours
                qualified = f"{base}.{alias.name}"
                found.add(qualified if qualified in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    result = set()
    for target in found:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name and target != "relaychat":
            result.add(target)
    return result


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path of module names, or []."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def walk(node: str) -> list[str]:
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_stack:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in done:
                cycle = walk(nxt)
                if cycle:
                    return cycle
        stack.pop()
        on_stack.discard(node)
        done.add(node)
        return []

    for start in sorted(graph):
        if start not in done:
            cycle = walk(start)
            if cycle:
                return cycle
    return []


class Layout(SynchronousTestCase):
    def test_no_import_cycle(self) -> None:
        modules = _modules()
        graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
        self.assertEqual(find_cycle(graph), [], "import cycle")

    def test_the_cycle_finder_finds_hidden_cycles(self) -> None:
        self.assertEqual(find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}), ["a", "b", "c", "a"])
        self.assertEqual(find_cycle({"a": {"b"}, "b": set()}), [])
        source = Path(self.mktemp())
        source.write_text("def f():\n    from relaychat.wire import messages\nif TYPE_CHECKING:\n    import relaychat.config\n")
        found = imports_of("relaychat.probe", source, _modules())
        self.assertIn("relaychat.wire.messages", found)  # function-level imports count
        self.assertNotIn("relaychat.config", found)  # type-checking-only imports do not

    def test_modules_stay_small(self) -> None:
        long = {name: n for name, path in _modules().items()
                if (n := len(path.read_text().splitlines())) > OVER_THE_LIMIT.get(name, MAX_LINES)}
        self.assertEqual(long, {}, f"modules over {MAX_LINES} lines")


    def test_the_chat_program_uses_the_client_librarys_public_face_only(self) -> None:
        """relaychat/chat/ imports relaychat.client itself, never one of its modules:
        the library's ``__all__`` is the whole of what a program may lean on."""
        import relaychat.client

        reaching_in: list[str] = []
        for name, path in _modules().items():
            if not name.startswith("relaychat.chat"):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    if node.module.startswith("relaychat.client."):
                        reaching_in.append(f"{name}: from {node.module}")
                    elif node.module == "relaychat.client":
                        missing = [a.name for a in node.names if a.name not in relaychat.client.__all__]
                        reaching_in.extend(f"{name}: {n} is not in relaychat.client.__all__" for n in missing)
                elif isinstance(node, ast.Import):
                    reaching_in.extend(f"{name}: import {a.name}" for a in node.names
                                       if a.name.startswith("relaychat.client."))
        self.assertEqual(reaching_in, [])


class OneDefinition(SynchronousTestCase):
    """What the two sides of the wire share is written once (relaychat/wire/)."""

    def sources(self) -> dict[str, str]:
        return {name: path.read_text() for name, path in _modules().items()}

    def test_protocol_lines_are_built_only_in_the_messages_module(self) -> None:
        """No f-string starts a protocol line ("OK HELLO {...}", "OFFERED {sid} ..."),
        and no plain string is the head of a reply or event ("OK PING", "NOTICE ")."""
        words = "OK|ERR|OFFERED|ACCEPTED|CLOSED|USER|NOTICE|BYE|FRAME|MAIL|HELLO|REGISTER|PROVE|LOOKUP|OFFER|ACCEPT|DECLINE|CLOSE|ACK"
        f_head = re.compile(rf"({words}) ")
        plain_head = re.compile(r"(OK|ERR) [A-Z-]+( |$)|(OFFERED|ACCEPTED|CLOSED|USER|NOTICE|BYE) ")
        offenders = {}
        for name, path in _modules().items():
            if name == "relaychat.wire.messages":
                continue
            hits = []
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                    head = node.values[0].value
                    if isinstance(head, str) and f_head.match(head):
                        hits.append(f"line {node.lineno}: f{head!r}...")
                elif isinstance(node, ast.Constant) and isinstance(node.value, str) and plain_head.match(node.value):
                    hits.append(f"line {node.lineno}: {node.value!r}")
            if hits:
                offenders[name] = hits
        self.assertEqual(offenders, {})

    def test_one_nickname_rule_and_one_protocol_version(self) -> None:
        nick_rule = re.compile(r"\{1,23\}")
        version = re.compile(r"^PROTOCOL_VERSION\b.*=", re.M)
        self.assertEqual([n for n, t in self.sources().items() if nick_rule.search(t)], ["relaychat.wire.nicknames"])
        self.assertEqual([n for n, t in self.sources().items() if version.search(t)], ["relaychat.wire.messages"])
