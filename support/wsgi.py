"""WSGI entry point, for tools that want one; streaming answers need the ASGI app."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")

application = get_wsgi_application()
