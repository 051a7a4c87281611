"""Settings for the type checker only: django-stubs' mypy plugin imports a settings module to learn
the models and settings. The real settings refuse to load without a secret key; this gives them
the development fallback (the same as `DJANGO_DEBUG=1`), so that `mypy` runs with no environment.
Never used to serve anything."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_DEBUG", "1")

from jobsconsole.settings import *  # noqa: F403
