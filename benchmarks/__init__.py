"""trioflow's performance suite: each figure next to its raw-Trio floor.

Run ``python -m benchmarks`` (all modules), ``python -m benchmarks actors``
(only ``bench_actors.py``), and add ``--quick`` for a fast, rougher pass. Each
``bench_*.py`` module exposes ``BENCHMARKS``; see :mod:`benchmarks._harness`.
"""
