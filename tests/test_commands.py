"""Tests for relaychat.chat.commands: the /command language and its help."""

from __future__ import annotations

from twisted.trial import unittest

from relaychat.chat import commands as c
from relaychat.chat.commands import (
    COMMANDS,
    CommandError,
    help_lines,
    help_topic,
    is_nickname,
    parse,
)


class PlainLineTests(unittest.TestCase):
    def test_text_is_say(self) -> None:
        self.assertEqual(parse("hello there"), c.Say("hello there"))

    def test_spaces_kept(self) -> None:
        self.assertEqual(parse("  indented  "), c.Say("  indented  "))

    def test_blank_is_nothing(self) -> None:
        self.assertIsNone(parse(""))
        self.assertIsNone(parse("   "))

    def test_double_slash_sends_slash(self) -> None:
        self.assertEqual(parse("//etc/passwd is a file"), c.Say("/etc/passwd is a file"))

    def test_slash_alone_is_error(self) -> None:
        self.assertRaises(CommandError, parse, "/")
        self.assertRaises(CommandError, parse, "/ quit")


class CommandTests(unittest.TestCase):
    def test_each_command(self) -> None:
        cases = {
            "/connect bob": c.Connect("bob"),
            "/call Bob": c.Connect("Bob"),
            "/accept": c.Accept(None),
            "/accept bob": c.Accept("bob"),
            "/decline": c.Decline(None),
            "/no carol": c.Decline("carol"),
            "/who": c.Who(),
            "/whois bob": c.Whois("bob"),
            "/safety": c.Safety(None),
            "/fp bob": c.Safety("bob"),
            "/verify our first cat": c.Verify("our first cat"),
            "/trust bob": c.Trust("bob"),
            "/msg bob hi  there": c.Msg("bob", "hi  there"),
            "/mail bob see you tomorrow": c.Mail("bob", "see you tomorrow"),
            "/switch bob": c.Switch("bob"),
            "/close": c.Close(None),
            "/close bob": c.Close("bob"),
            "/quit": c.Quit(),
            "/exit": c.Quit(),
            "/help": c.Help(None),
            "/help verify": c.Help("verify"),
        }
        for line, expected in cases.items():
            self.assertEqual(parse(line), expected, line)

    def test_names_case_insensitive(self) -> None:
        self.assertEqual(parse("/QUIT"), c.Quit())
        self.assertEqual(parse("/Connect bob"), c.Connect("bob"))

    def test_extra_spaces_between_arguments(self) -> None:
        self.assertEqual(parse("/connect   bob  "), c.Connect("bob"))
        self.assertEqual(parse("/msg  bob   x y"), c.Msg("bob", "x y"))

    def test_missing_argument_gives_usage(self) -> None:
        e = self.assertRaises(CommandError, parse, "/connect")
        self.assertEqual(str(e), "Usage: /connect <nick> -- Ask nick for an encrypted conversation.")
        self.assertRaises(CommandError, parse, "/mail bob")
        self.assertRaises(CommandError, parse, "/verify   ")

    def test_too_many_arguments(self) -> None:
        e = self.assertRaises(CommandError, parse, "/connect bob carol")
        self.assertIn("Too many words for /connect", str(e))
        self.assertRaises(CommandError, parse, "/quit now")

    def test_bad_nickname(self) -> None:
        e = self.assertRaises(CommandError, parse, "/connect b@b")
        self.assertEqual(
            str(e),
            "'b@b' is not a nickname: nicknames are 2 to 24 letters, digits, '_' or '-', starting with a letter.",
        )
        self.assertRaises(CommandError, parse, "/msg 1bob hi")

    def test_unknown_command_suggests(self) -> None:
        e = self.assertRaises(CommandError, parse, "/conect bob")
        self.assertEqual(str(e), "There is no command /conect. Did you mean /connect? Type /help for the list.")
        e = self.assertRaises(CommandError, parse, "/zzzzzz")
        self.assertEqual(str(e), "There is no command /zzzzzz. Type /help for the list.")


class NicknameTests(unittest.TestCase):
    def test_rules(self) -> None:
        for good in ["bo", "alice", "A-b_c9", "x" * 24]:
            self.assertTrue(is_nickname(good), good)
        for bad in ["", "b", "9lives", "_x", "x" * 25, "bob\n", "bób", "a b"]:
            self.assertFalse(is_nickname(bad), bad)


class HelpTests(unittest.TestCase):
    def test_every_command_in_help(self) -> None:
        text = "\n".join(help_lines())
        for spec in COMMANDS:
            self.assertIn(spec.usage, text)
            self.assertIn(spec.summary, text)

    def test_help_usage_is_what_parser_accepts(self) -> None:
        """Filling each usage line with sample words parses to that command."""
        samples = {"nick": "bob", "text": "hi there", "secret": "our cat", "command": "who"}
        for spec in COMMANDS:
            words = [samples[p.name] for p in spec.parameters]
            command = parse(" ".join([f"/{spec.name}", *words]))
            self.assertIsInstance(command, spec.factory)
            for alias in spec.names:
                self.assertIsInstance(parse(" ".join([f"/{alias}", *words])), spec.factory)

    def test_optional_parameters_may_be_left_out(self) -> None:
        for spec in COMMANDS:
            words = [p.name for p in spec.parameters if p.required]
            if len(words) == len(spec.parameters):
                continue
            filled = {"nick": "bob", "text": "t", "secret": "s"}
            self.assertIsInstance(parse(" ".join([f"/{spec.name}", *(filled[w] for w in words)])), spec.factory)

    def test_topic(self) -> None:
        self.assertEqual(
            help_topic("/call"),
            [
                "/connect <nick> -- Ask nick for an encrypted conversation.",
                "If nick has already asked you, this accepts their offer instead.",
                "Also: /call, /query",
            ],
        )
        self.assertEqual(help_topic("decline"), ["/decline [nick] -- Decline an offered conversation.", "Also: /no"])
        self.assertEqual(help_topic("who")[0], "/who -- List who is online.")

    def test_unknown_topic(self) -> None:
        self.assertRaises(CommandError, help_topic, "frobnicate")

    def test_help_lines_aligned(self) -> None:
        lines = help_lines()[1:-1]
        columns = {line.index(spec.summary) for line, spec in zip(lines, COMMANDS)}
        self.assertEqual(len(columns), 1)

    def test_list_fits_80_columns(self) -> None:
        """With the status prefix, each line fits a standard terminal unwrapped."""
        for line in help_lines():
            self.assertLessEqual(len("*** " + line), 79, line)

    def test_no_duplicate_names(self) -> None:
        names = [n for spec in COMMANDS for n in spec.names]
        self.assertEqual(len(names), len(set(names)))
