"""A run's steering applied: the gate every batch and step asks before deciding a target, admitting
and releasing held targets, moving a run through its plan, stopping it, and the operator's commands.
The rules themselves are pure and live in domain.steering."""
