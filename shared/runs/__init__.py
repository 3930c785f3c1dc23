"""Starting runs: the one way every trigger (the API, a retry, the catalog watcher) creates a run and queues its start."""
