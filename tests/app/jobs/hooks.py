"""wsgw's application hooks (docs/PROTOCOL.md, "Application hooks").

workerd POSTs here with the client's own credential headers (Cookie with the
sessionid, Authorization, Origin) copied from its websocket handshake, so
SessionMiddleware + AuthenticationMiddleware (and any other authentication
the site has) give request.user exactly as for the site's own pages.

Both views only read: csrf_exempt (a cross-site POST could not read the
answer anyway), never a redirect to the login page (401 JSON instead), and
a few indexed queries each.
"""
import json

from django.conf import settings
from django.contrib.sessions.models import Session
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import Job, JobGrant
from .testsupport import instrumented  # a no-op unless WSGW_APP_TEST_ENDPOINTS=1

# Channels whose ids are job ids (AWX: every unified job kind shares one id
# space). Any other channel: nothing is allowed.
JOB_CHANNELS = {"job_events", "workflow_events", "ad_hoc_command_events",
                "project_update_events", "inventory_update_events", "system_job_events"}
ID_MAX = 2**53 - 1


def _refuse(status, why):
    return JsonResponse({"error": why}, status=status)


def _origin_refused(request):
    origin = request.headers.get("Origin")
    allowed = settings.WSGW_HOOK_ALLOWED_ORIGINS
    return bool(origin and allowed and origin not in allowed)


def _credential_expiry(request):
    """Unix seconds when the credential this request carries ends."""
    token = getattr(request, "api_token", None)
    if token is not None:
        return int(token.expires.timestamp())
    expiry = (Session.objects.filter(session_key=request.session.session_key)
              .values_list("expire_date", flat=True).first())
    return int(expiry.timestamp()) if expiry else None


@csrf_exempt
@require_POST
@instrumented("connect")
def connect(request):
    """Who is this client? 200 {"user": id, "expires": unix, "session": {...}}."""
    user = request.user
    if not user.is_authenticated:
        return _refuse(401, "not authenticated")
    if _origin_refused(request):
        return _refuse(403, "origin not allowed")
    answer = {"user": user.pk, "session": {"name": user.username}}
    expires = _credential_expiry(request)
    if expires is not None:
        answer["expires"] = expires
    return JsonResponse(answer)


def _parse_subscribe(body):
    """(user id, channel, ids) of {"user": 7, "channel": "job_events",
    "ids": [42, 43]}; ValueError when it is not that."""
    req = json.loads(body)
    if not isinstance(req, dict):
        raise ValueError("not an object")
    user = req.get("user")
    if isinstance(user, str) and user.isdigit() and user.isascii():
        user = int(user)
    channel, ids = req.get("channel"), req.get("ids")
    if (type(user) is not int or not 0 < user <= ID_MAX or not isinstance(channel, str)
            or not isinstance(ids, list)
            or not all(type(i) is int and 0 <= i <= ID_MAX for i in ids)):
        raise ValueError("bad request")
    return user, channel, ids


@csrf_exempt
@require_POST
@instrumented("subscribe")
def subscribe(request):
    """Which of these ids may this user see? 200 {"allowed": [...]}."""
    user = request.user
    if not user.is_authenticated:
        return _refuse(401, "not authenticated")
    try:
        user_id, channel, ids = _parse_subscribe(request.body)
    except ValueError:
        return _refuse(400, "expected {\"user\": ID, \"channel\": NAME, \"ids\": [ID, ...]}")
    if user_id != user.pk:
        return _refuse(403, "credential is another user's")
    if _origin_refused(request):
        return _refuse(403, "origin not allowed")
    if channel not in JOB_CHANNELS or not ids:
        allowed = []
    elif user.is_superuser:
        allowed = Job.objects.filter(id__in=ids).values_list("id", flat=True)
    else:
        allowed = (JobGrant.objects.filter(user=user, job_id__in=ids)
                   .values_list("job_id", flat=True))
    return JsonResponse({"allowed": sorted(set(allowed))})
