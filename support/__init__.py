"""Project package: settings, urls, ASGI/WSGI entry points and the Celery app."""

from support.celery import app as celery_app

__all__ = ("celery_app",)
