"""Keeps a Teams app current in every installation (chats, teams, users' personal scope):
publish -> discover -> upgrade, with run status."""

__version__ = "0.2.0"  # the release (CHANGELOG.md): GET /api/health and `teams-upgrader --version` say it
