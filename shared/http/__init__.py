"""HTTP routes (entry points): publish, run status, apps, Graph change notifications."""
