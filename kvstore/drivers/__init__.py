"""Built-in drivers, one module each so that an optional dependency matters only when used.

Import a constructor from its module: ``from kvstore.drivers.sqlite import sqlite_driver``.
"""
