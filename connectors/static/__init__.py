"""The static connector: its config (hand-declared hosts, workloads and services) and the connector that reads it."""
