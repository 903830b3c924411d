"""Many relays as one over Redis (``[cluster]`` in the configuration; off by default).

:mod:`relaychat.cluster.routing` is the sans-IO core (who is online on which
node, and the batch and credit format between nodes);
:mod:`relaychat.cluster.scripts` the Redis keys and the Lua scripts that
change them; :mod:`relaychat.cluster.sessions` the sessions with users on
other nodes (stand-ins, offers, one batch per node per turn);
:mod:`relaychat.cluster.node` the thin txredisapi adapter that keeps it all
fed and serves the hub's directory from Redis.
"""
