"""The automatic triggers: the catalog watcher, installation notifications into the registry, Graph subscriptions."""
