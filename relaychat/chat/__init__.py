"""The terminal chat program, built on the public face of relaychat.client."""
