"""ASGI entry point (uvicorn): answers stream to the widget as they are produced."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")

application = get_asgi_application()
