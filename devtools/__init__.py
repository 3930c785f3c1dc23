"""Local-only tools: Graph emulator, managed-identity endpoint, Azurite runner, local Functions host.

Never deployed (see .funcignore); nothing in `shared/` imports from here.
"""
