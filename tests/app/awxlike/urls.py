from django.conf import settings
from django.urls import path

from jobs import hooks, testsupport, views

urlpatterns = [
    path("", views.home),
    path("accounts/login/", views.login_view),
    path("accounts/logout/", views.logout_view),
    # wsgw's application hooks (docs/PROTOCOL.md): for workerd, need not be public.
    path("wsgw/connect", hooks.connect),
    path("wsgw/subscribe", hooks.subscribe),
]

if settings.WSGW_TEST_ENDPOINTS:  # TEST SUPPORT ONLY (jobs/testsupport.py)
    t = testsupport
    urlpatterns += [
        path("test/users", t.create_user),
        path("test/jobs", t.create_job),
        path("test/grant", t.grant),
        path("test/revoke", t.revoke),
        path("test/tokens", t.create_token),
        path("test/session-expiry", t.session_expiry),
        path("test/hooks", t.hooks),
        path("test/delay", t.delay),
        path("test/calls", t.calls),
        path("test/calls/reset", t.calls_reset),
    ]
