"""Pacing of Graph requests across processes and instances: a shared schedule per throttling bucket."""
