"""fastpool's own surfaces on the pools: ``Pool``/``AsyncPool`` and ``PoolOptions``,
leadership (advisory locks), ownership and the test sandbox.

They reach a pool only through its declared interface
(:class:`fastpool._pool.interface.PoolInterface`).
"""
