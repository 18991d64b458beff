"""WSGI entry point (gunicorn awxlike.wsgi, uwsgi --module awxlike.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "awxlike.settings")
application = get_wsgi_application()
