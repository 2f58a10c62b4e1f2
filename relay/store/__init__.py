"""PostgreSQL storage: migrations, the embedded server, the batch writer and queries.

Functions that run in threads take a psycopg connection and return plain values
(tuples, dicts, dataclasses), never cursors.
"""
