"""The drivers: one module per kind of connection, behind one declared contract.

``base`` declares the contract (:class:`~fastpool._drivers.base.Driver`): what
a pool calls to open, check, reset, interrupt and close a connection, how it
classifies errors and keeps secrets out of messages, and which I/O-free gates
the borrow path runs inline.  ``resource`` adapts any
:class:`fastpool.Resource`; ``psycopg_*`` drive psycopg 3 connections.  A
driver imports the core (for its gates) and nothing above it.
"""
