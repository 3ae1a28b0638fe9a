"""A Django database backend: PostgreSQL with fastpool's pool behind ``OPTIONS["pool"]``.

Switch a project with one setting::

    DATABASES = {
        "default": {
            "ENGINE": "fastpool.django",
            "NAME": "app",
            "OPTIONS": {"pool": {"min_size": 2, "max_size": 8, "timeout": 10}},
        }
    }

Everything else is Django's own PostgreSQL backend.  ``OPTIONS["pool"]``
takes the option names of :class:`fastpool.ConnectionPool` (psycopg_pool's:
``min_size``, ``max_size``, ``timeout``, ``max_waiting``, ``max_lifetime``,
``max_idle``, ``reconnect_timeout``, ``name``...), or ``True`` for the
defaults; the other ``OPTIONS`` stay connection parameters.  Without
``OPTIONS["pool"]`` the backend connects without a pool, as Django does.
Requires Django 5.1 or later (``pip install 'fastpool[django]'``).
"""
