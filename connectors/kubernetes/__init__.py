"""The kubernetes connector: its config, client, records and tools."""
