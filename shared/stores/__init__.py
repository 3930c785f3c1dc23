"""Table storage: runs (their rows, steering, inputs, history, retention), targets and their exact
counters, the installation registry, what the app remembers per Teams app; and the run cache."""
