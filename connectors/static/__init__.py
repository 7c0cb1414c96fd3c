"""The static connector: its config, client, records and tools."""
