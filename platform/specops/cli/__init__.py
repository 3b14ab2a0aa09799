"""The ``specops`` command line: one module per concern, each with ``install(app)``."""
