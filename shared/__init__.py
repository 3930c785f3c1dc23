"""Keeps a Teams app current in every chat: publish -> discover -> upgrade, with run status."""
