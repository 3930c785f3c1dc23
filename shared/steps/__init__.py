"""The control steps of a run: the start (and its waits for the catalog), discovery, laying out
targets already known, running each step once whatever the redeliveries, and the poison-queue
safety net for steps."""
