"""The policy engine: named tools with typed arguments, their classification, and policy decisions.

    tools.py      ToolSpec / ToolArgs / ToolRegistry (tools declared by connectors/*/tools.py)
    targets.py    resolving ``--target`` through the inventory
    rules.py      the policy file (config/policy.yaml): loading, validation, hashing
    engine.py     classify() and decide(), with an explanation of every decision
    execute.py    running a call end to end: decide, approve, execute, audit
    approvals.py  pending approvals: list, approve, reject

Nothing here imports a source-system SDK; tool implementations import theirs when they run.
"""

from inventory.policy.classes import ToolClass

__all__ = ["ToolClass"]
