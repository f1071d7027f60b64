"""Compatibility harnesses: other projects' own tests, run on trioflow through name-mapping shims.

Nothing here is part of the ``runtime`` package, and nothing here runs in CI:
each harness reads a local checkout of the other project and fetches nothing.
"""
