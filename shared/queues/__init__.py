"""Queue- and timer-triggered entry points: one dispatch table per queue, and the poison-queue safety nets."""
