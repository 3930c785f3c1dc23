"""Queue- and timer-triggered entry points."""
