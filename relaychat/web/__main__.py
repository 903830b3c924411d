"""``python -m relaychat.web``: refresh the hashes in static/index.html after editing a file."""

from relaychat.web import write_index

print("index.html updated" if write_index() else "index.html already up to date")
