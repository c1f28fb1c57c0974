"""Storage shared by the consistency patterns (chapter 5): SQLite, embedded and default.

:mod:`patterns.storage.sqlite` opens a SQLite database safely for many threads and
processes. Redis adapters live beside the pattern they serve and import ``redis``
lazily.
"""
