"""Many relays as one over Redis (``[cluster]`` in the configuration; off by default).

:mod:`relaychat.cluster.routing` is the sans-IO core (who is online on which
node); :mod:`relaychat.cluster.node` the thin txredisapi adapter that keeps
it fed and serves the hub's directory from Redis.
"""
