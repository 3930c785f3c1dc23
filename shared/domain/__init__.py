"""The model, without I/O: targets and outcomes, runs and their status document, queue messages, the app version to upgrade to."""
