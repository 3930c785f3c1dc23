"""The steps of a run, as queue messages drive them: start, discovery, loading targets, upgrading
batches, the poison-queue safety net, and sending work to the queues."""
