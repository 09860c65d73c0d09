"""The decision core: pure functions of (call, callee, history, policy).

Nothing here does I/O or reads the clock, so every rule is testable with a
frozen instant and every logged decision can be replayed by an auditor.
"""
