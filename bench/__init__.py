"""Benchmark: the upgrader against the Graph emulator's real limit structure, next to what a user writes instead."""
