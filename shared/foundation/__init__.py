"""Foundations: settings, error types, structured telemetry, storage clients. They import nothing else of the app."""
