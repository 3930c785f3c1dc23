"""The model, without I/O: targets and outcomes, runs and their status document, plans (rollout
steps, maintenance windows) and the steering rules, queue messages, the app version to upgrade to."""
