"""Command-line client for a deployed or local upgrader."""
