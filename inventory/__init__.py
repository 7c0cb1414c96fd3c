"""inventory: infrastructure inventory sync, policy engine and immutable audit log."""

__version__ = "0.1.0"
