"""The flow of one event: target (which address) -> plan (pure) -> executor -> outcome -> audit.

``run.Pipeline`` drives it for the worker; ``sync --dry-run`` plans through the same ``plan``.
"""
