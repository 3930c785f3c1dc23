"""Table storage: runs, targets and their exact counters, the installation registry, what the automatic triggers remember."""
