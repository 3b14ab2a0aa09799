"""The ``specops`` command line: one module per concern, each with ``install(app)``.

`main` (the console entry point) is the only public name: no other package imports the CLI.
"""

from specops.cli.app import main

__all__ = ["main"]
