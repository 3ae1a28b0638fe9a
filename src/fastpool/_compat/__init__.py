"""Other libraries' pool surfaces on fastpool: psycopg_pool's ``ConnectionPool`` family.

Each keeps the names, defaults and behaviour of the library it replaces, so
that switching is one import line, and reaches the pool only through its
declared interface.
"""
