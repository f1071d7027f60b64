"""Railtracks' own integration tests, run on trioflow: see ``__main__``."""
