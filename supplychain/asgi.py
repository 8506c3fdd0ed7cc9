"""ASGI entry point, for servers that stream (the stock level event stream)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supplychain.settings")
application = get_asgi_application()
