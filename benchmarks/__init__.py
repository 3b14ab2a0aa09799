"""Benchmarks: each script prints a table and writes JSON under ``benchmarks/results/``.

Run a script from the repository root as a module, ``python -m benchmarks.<script>`` (with
``PYTHONPATH=platform`` where ``specops`` is not installed); what the scripts share is in
:mod:`benchmarks.harness`.
"""
