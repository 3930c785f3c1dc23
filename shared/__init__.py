"""Keeps a Teams app current in every installation (chats, teams, users' personal scope):
publish -> discover -> upgrade, with run status."""
