"""The proxmox connector: its config, client, records and tools."""
