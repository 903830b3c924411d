"""Across nodes, every line naming a user names it in its display form, as one node does;
and each node's metrics say which node they are."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from relaychat.crypto.keypair import Identity
from relaychat.wire.codec import b64encode
from tests.cluster_support import SharedCluster, listening, wait_for


class DisplayForms(SharedCluster, SynchronousTestCase):
    def extra_config(self, name: str) -> str:
        return '[metrics]\nendpoint = "tcp:0:interface=127.0.0.1"\n'

    def test_who_lookup_offer_and_offered_name_users_of_other_nodes_in_display_form(self) -> None:
        alice_id, bob_id = Identity.generate(), Identity.generate()
        alice = self.registered(0, "AliCe", alice_id)
        bob = self.registered(1, "BoB", bob_id)
        wait_for(lambda: self.who(alice)[0] == {"AliCe", "BoB"} and self.who(bob)[0] == {"AliCe", "BoB"},
                 what="both seen in display form")
        self.assertTrue(alice.ask("LOOKUP bob").startswith(f"OK LOOKUP BoB {b64encode(bob_id.identity_public)} "))
        reply = alice.ask("OFFER bob").split(" ")
        self.assertEqual((reply[0], reply[1], reply[3]), ("OK", "OFFER", "BoB"))
        self.assertEqual(bob.read_line(), f"OFFERED {reply[2]} AliCe {b64encode(alice_id.identity_public)}")
        # The owner reclaiming through the other node is greeted by the form it registered.
        self.assertTrue(self.client(0).register("bob", bob_id).startswith("OK PROVE BoB known"))
        self.assertEqual(bob.read_line(), "BYE replaced you logged in elsewhere")

    def test_mail_names_its_sender_in_display_form_waiting_or_delivered_at_once(self) -> None:
        sender = self.registered(0, "MaRy", Identity.generate())
        dora_id = Identity.generate()
        self.registered(1, "DoRa", dora_id).close()
        wait_for(lambda: sender.ask("LOOKUP dora").endswith(" offline"), what="dora offline")
        body = b64encode(b"sealed")
        mail_id = sender.ask(f"MAIL dora {body}").split(" ")[2]
        # Waiting mail, delivered at login through the other node.
        dora = self.client(1)
        self.assertEqual(dora.register("dora", dora_id), "OK PROVE DoRa known 1")
        line = dora.read_line().split(" ")
        self.assertEqual((line[0], line[1], line[2], line[4]), ("MAIL", mail_id, "MaRy", body))
        # Mail to someone online on the other node, delivered at once.
        wait_for(lambda: sender.ask("LOOKUP dora").endswith(" online"), what="dora online")
        second = sender.ask(f"MAIL dora {body}").split(" ")[2]
        line = dora.read_line().split(" ")
        self.assertEqual((line[0], line[1], line[2]), ("MAIL", second, "MaRy"))

    def test_each_nodes_metrics_are_labelled_with_its_name(self) -> None:
        self.registered(1, "metered", Identity.generate())
        for name, daemon in zip(self.names, self.daemons):
            port = listening(daemon, "metrics")[0]
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode("utf-8")
            families = {f.name: f for f in text_string_to_metric_families(text)}
            self.assertEqual([(s.labels, s.value) for s in families["target_info"].samples], [({"node": name}, 1.0)])
            nodes = {s.labels.get("node") for f in families.values() for s in f.samples}
            self.assertEqual(nodes, {name})  # every sample, process_* and the lag histogram too
            self.assertIn("process_open_fds", families)
            online = [s.value for s in families["relaychat_online"].samples]
            self.assertEqual(online, [1.0] if name == "b" else [0.0])
