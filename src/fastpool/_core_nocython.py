"""Stand-in for Cython's ``cython`` module when Cython is not installed.

The pool core (``_core_pool.py``) reads ``cython.compiled`` to know whether it
runs compiled; a pure-Python install has no Cython, and runs it as it is.
"""

compiled = False
