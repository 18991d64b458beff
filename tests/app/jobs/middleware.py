"""Authorization: Bearer <key> -> request.user (what DRF's token or OAuth2
authentication does for AWX's API clients)."""
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from .models import ApiToken


class BearerTokenMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        auth = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            token = (ApiToken.objects.select_related("user")
                     .filter(key=key.strip(), expires__gt=timezone.now()).first())
            # A bad or expired token is no user, whatever the cookie says.
            request.user = token.user if token and token.user.is_active else AnonymousUser()
            request.api_token = token
        return self.get_response(request)
