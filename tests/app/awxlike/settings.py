"""Settings of the test application: a small Django site standing in for AWX
(users, session login, a CSRF cookie, per-job grants) whose two views
jobs/hooks.py are wsgw's application hooks (docs/PROTOCOL.md, "Application
hooks").

Environment (tests/integration/djangoapp.py sets them):
  WSGW_APP_DB              the SQLite file (default: db.sqlite3 beside manage.py)
  WSGW_APP_SESSION_AGE     session lifetime in seconds (default: Django's 2 weeks)
  WSGW_APP_TEST_ENDPOINTS  "1" mounts /test/... (jobs/testsupport.py): TEST ONLY,
                           never in a real deployment
  WSGW_APP_SECRET_KEY      Django's SECRET_KEY (default: a fixed test value)
  WSGW_APP_AMQP_URL        settings.WSGW_AMQP_URL: where wsgw.django emits
                           (manage.py emitjob); unset: $WSGW_AMQP_URL
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("WSGW_APP_SECRET_KEY", "wsgw-test-app-not-a-secret-0123456789")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "jobs",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Authorization: Bearer <api token>, for non-browser clients (after the
    # session: a request with both is the token's user).
    "jobs.middleware.BearerTokenMiddleware",
]

ROOT_URLCONF = "awxlike.urls"
WSGI_APPLICATION = "awxlike.wsgi.application"
TEMPLATES = []

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("WSGW_APP_DB", str(BASE_DIR / "db.sqlite3")),
        # Threads of the server write sessions concurrently: wait for the lock.
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

# Standard Django cookies: sessionid (HttpOnly) and csrftoken (readable by the
# page's JavaScript, which sends it as the websocket's "xrftoken").
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_NAME = "sessionid"
SESSION_COOKIE_AGE = int(os.environ.get("WSGW_APP_SESSION_AGE", 14 * 24 * 3600))
CSRF_COOKIE_NAME = "csrftoken"
LOGIN_URL = "/accounts/login/"

# Origins the hooks accept in the client's Origin header (an absent Origin is
# a non-browser client and is accepted). Empty: any (wsgw's own
# gateway.allowed_origins still applies).
WSGW_HOOK_ALLOWED_ORIGINS = os.environ.get("WSGW_APP_ALLOWED_ORIGINS", "").split()

WSGW_TEST_ENDPOINTS = os.environ.get("WSGW_APP_TEST_ENDPOINTS") == "1"

# wsgw.django.emit_channel_notification's broker (clients/python).
WSGW_AMQP_URL = os.environ.get("WSGW_APP_AMQP_URL") or None

USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
