"""WSGI entry point, served by gunicorn in production (``supplychain.wsgi:application``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supplychain.settings")
application = get_wsgi_application()
