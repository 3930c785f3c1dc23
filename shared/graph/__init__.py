"""Microsoft Graph: the REST client (tokens, pacing hook, typed errors, paging), and the catalog and directory reads."""
