"""The package layout is the architecture: these tests keep it that way.

The relay imports nothing about client key storage (it verifies, it does
not hold private identity keys).

The terminal program (``relaychat.chat``) may use only the client
library's public face, the names ``relaychat.client`` exports, never one of
its modules; so the library can be reorganised without breaking programs.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

import relaychat
import relaychat.client

PACKAGE = Path(relaychat.__file__).parent


def imports(directory: Path) -> list[tuple[str, str, list[str]]]:
    """(file, module, names) for every import in the .py files of ``directory``."""
    found = []
    for path in sorted(directory.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.append((path.name, node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                found.extend((path.name, a.name, []) for a in node.names)
    return found


class ProgramUsesLibraryFaceTests(unittest.TestCase):
    def test_chat_imports_no_client_module(self) -> None:
        found = imports(PACKAGE / "chat")
        self.assertTrue(any(module == "relaychat.client" for _, module, _ in found))
        inside = [(f, m) for f, m, _ in found if m.startswith("relaychat.client.")]
        self.assertEqual(inside, [])

    def test_chat_imports_only_exported_names(self) -> None:
        exported = set(relaychat.client.__all__)
        for name in exported:
            self.assertTrue(hasattr(relaychat.client, name), name)
        used = {n for _, m, names in imports(PACKAGE / "chat") if m == "relaychat.client" for n in names}
        self.assertTrue(used)
        self.assertEqual(used - exported, set())

    def test_chat_attribute_uses_are_exported(self) -> None:
        """``from relaychat import client as library`` then ``library.X``: X is exported too."""
        exported = set(relaychat.client.__all__)
        for path in sorted((PACKAGE / "chat").glob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            aliases = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                       and node.module == "relaychat" for a in node.names if a.name == "client"}
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id in aliases):
                    self.assertIn(node.attr, exported, f"{path.name}: {node.value.id}.{node.attr}")

    def test_library_does_not_import_the_program(self) -> None:
        for f, m, _ in imports(PACKAGE / "client"):
            self.assertFalse(m.startswith("relaychat.chat"), f"{f} imports {m}")


class RelayImportsNoKeyStorageTests(unittest.TestCase):
    """The relay verifies identities (``relaychat.crypto.identity``) but never
    holds a private identity key: nothing about key storage is imported."""

    STORAGE = ("relaychat.crypto.keypair", "relaychat.crypto.keyfiles", "relaychat.crypto.pkcs8")

    def test_relay_modules_load_no_key_storage(self) -> None:
        script = (
            "import importlib, pkgutil, sys\n"
            "import relaychat.server, relaychat.admin\n"
            "for package in (relaychat.server, relaychat.admin):\n"
            "    for info in pkgutil.iter_modules(package.__path__):\n"
            "        importlib.import_module(package.__name__ + '.' + info.name)\n"
            "importlib.import_module('relaychat.tap')\n"
            "print('\\n'.join(sorted(name for name in sys.modules if name.startswith('relaychat'))))\n"
        )
        loaded = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                                text=True, cwd=str(PACKAGE.parent)).stdout.split()
        self.assertIn("relaychat.server.hub", loaded)
        self.assertIn("relaychat.crypto.identity", loaded)
        for name in self.STORAGE:
            self.assertNotIn(name, loaded)
        self.assertEqual([n for n in loaded if n.startswith(("relaychat.client", "relaychat.chat"))], [])

    def test_verification_module_imports_no_key_storage(self) -> None:
        found = [m for f, m, _ in imports(PACKAGE / "crypto") if f == "identity.py"]
        self.assertEqual([m for m in found if m in self.STORAGE], [])
