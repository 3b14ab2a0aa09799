"""Helpers shared by the test folders: servers, tiny checkpoints, fakes and fixture plugins.

Tests import helpers from here, never from another test module; the fixture plugins are registered
once, in ``tests/conftest.py``.
"""
