"""Deciding batches of targets: a targets-queue message's GETs, claims, upgrade POSTs and outcomes."""
