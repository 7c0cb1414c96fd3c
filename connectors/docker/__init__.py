"""The docker connector: its config, client, records and tools."""
