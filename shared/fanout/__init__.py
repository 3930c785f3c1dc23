"""Sending work to the queues: batches of targets spread over time at the rate Graph accepts, and control steps."""
