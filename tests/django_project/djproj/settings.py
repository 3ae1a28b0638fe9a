"""Settings of the Django project the test-suite runs on the ``fastpool.django`` backend.

The database comes from the environment the test sets (a database of its own).
"""

import os

SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["shop"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "djproj.urls"
# The /fail/ view raises on purpose: keep its tracebacks out of the test's output.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.request": {"level": "CRITICAL"}},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "fastpool.django",
        "NAME": os.environ["FASTPOOL_DJANGO_DB"],
        "USER": os.environ.get("FASTPOOL_DJANGO_USER", "postgres"),
        "HOST": os.environ.get("FASTPOOL_DJANGO_HOST", "127.0.0.1"),
        "PORT": os.environ.get("FASTPOOL_DJANGO_PORT", "5432"),
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            "application_name": os.environ["FASTPOOL_DJANGO_APP"],
            "pool": {
                "min_size": 1,
                "max_size": int(os.environ.get("FASTPOOL_DJANGO_MAX", "4")),
                "timeout": 20,
            },
        },
    }
}
