"""TEST SUPPORT ONLY: endpoints under /test/ that let the integration tests
drive the application (create jobs, users and tokens, grant and revoke,
shorten a session, slow or break the hooks) and see what the hooks were
sent. Mounted only when WSGW_APP_TEST_ENDPOINTS=1 (awxlike/urls.py); a real
site has none of this.

Hook behaviour (POST /test/hooks, /test/delay) and the call log live in this
process's memory: one server process (runserver, threaded) is assumed.
"""
import functools
import json
import secrets
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .models import ApiToken, Job, JobGrant

HOOKS = ("connect", "subscribe")
MAX_CALLS = 1000

_lock = threading.Lock()
# Per hook: delay_ms (sleep before answering), status and body (answer this
# instead of running the view; body is raw text, JSON or not).
_behaviour = {h: {"delay_ms": 0, "status": None, "body": None} for h in HOOKS}
_calls = []          # the hooks' requests, oldest first, at most MAX_CALLS
_in_flight = 0
_in_flight_max = 0

RECORDED_HEADERS = ("Content-Type", "Cookie", "Authorization", "Origin", "X-Forwarded-For",
                    "X-Wsgw-Hook", "User-Agent")


def instrumented(hook):
    """Wraps a hook view: records the request, applies the configured delay,
    and answers the configured status/body instead when one is set. The view
    itself, unchanged, when the test endpoints are off."""
    def wrap(view):
        if not settings.WSGW_TEST_ENDPOINTS:
            return view

        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            global _in_flight, _in_flight_max
            started = time.time()
            with _lock:
                b = dict(_behaviour[hook])
                _in_flight += 1
                _in_flight_max = max(_in_flight_max, _in_flight)
            try:
                if b["delay_ms"]:
                    time.sleep(b["delay_ms"] / 1000)
                if b["status"] is not None:
                    response = HttpResponse(b["body"] or "", status=b["status"],
                                            content_type="application/json")
                else:
                    response = view(request, *args, **kwargs)
            finally:
                with _lock:
                    _in_flight -= 1
            try:
                body = json.loads(request.body or b"null")
            except ValueError:
                body = request.body.decode("utf-8", "replace")
            record = {"hook": hook, "method": request.method, "path": request.path,
                      "headers": {h: request.headers[h] for h in RECORDED_HEADERS
                                  if h in request.headers},
                      "body": body, "status": response.status_code,
                      "answer": response.content.decode("utf-8", "replace"),
                      "started": started, "ended": time.time()}
            with _lock:
                _calls.append(record)
                del _calls[:-MAX_CALLS]
            return response
        return wrapper
    return wrap


def _json(request):
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


def _user(ref):
    """A User from a username or an id."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        return User.objects.get(pk=int(ref))
    return User.objects.get(username=ref)


def endpoint(view):
    return csrf_exempt(require_POST(view))


@endpoint
def create_user(request):
    """{"username", "password", "id"?, "superuser"?} -> {"id"}"""
    d = _json(request)
    user = User(username=d["username"], is_superuser=bool(d.get("superuser")))
    if d.get("id") is not None:
        user.pk = int(d["id"])
    user.set_password(d["password"])
    user.save()
    return JsonResponse({"id": user.pk})


@endpoint
def create_job(request):
    """{"name"?} -> {"id"}"""
    job = Job.objects.create(name=_json(request).get("name", ""))
    return JsonResponse({"id": job.pk})


@endpoint
def grant(request):
    """{"user": name or id, "job": id}"""
    d = _json(request)
    JobGrant.objects.get_or_create(user=_user(d["user"]), job=Job.objects.get(pk=d["job"]))
    return JsonResponse({})


@endpoint
def revoke(request):
    """{"user": name or id, "job": id}"""
    d = _json(request)
    JobGrant.objects.filter(user=_user(d["user"]), job_id=d["job"]).delete()
    return JsonResponse({})


@endpoint
def create_token(request):
    """{"user": name or id, "ttl": seconds} -> {"key", "expires"} (Bearer)"""
    d = _json(request)
    expires = timezone.now() + timedelta(seconds=float(d.get("ttl", 3600)))
    token = ApiToken.objects.create(key=secrets.token_urlsafe(32), user=_user(d["user"]),
                                    expires=expires)
    return JsonResponse({"key": token.key, "expires": int(expires.timestamp())})


@endpoint
def session_expiry(request):
    """{"sessionid": key, "seconds": N}: the session ends N s from now
    (what the connect hook answers as "expires"; Django refuses it after)."""
    d = _json(request)
    expires = timezone.now() + timedelta(seconds=float(d["seconds"]))
    n = Session.objects.filter(session_key=d["sessionid"]).update(expire_date=expires)
    if not n:
        return JsonResponse({"error": "no such session"}, status=404)
    return JsonResponse({"expires": int(expires.timestamp())})


@endpoint
def hooks(request):
    """{"hooks": ["connect", "subscribe"] (default both), "delay_ms": N,
    "status": S or null, "body": "raw text" or null}: how the hooks behave
    from now on. {} puts both back to normal."""
    d = _json(request)
    names = d.get("hooks") or HOOKS
    with _lock:
        for h in names:
            _behaviour[h] = {"delay_ms": int(d.get("delay_ms") or 0),
                             "status": d.get("status"), "body": d.get("body")}
    return JsonResponse({h: _behaviour[h] for h in HOOKS})


@endpoint
def delay(request):
    """{"ms": N}: both hooks sleep N ms before answering (0: no delay)."""
    ms = int(_json(request).get("ms") or 0)
    with _lock:
        for h in HOOKS:
            _behaviour[h]["delay_ms"] = ms
    return JsonResponse({"ms": ms})


@csrf_exempt
@require_GET
def calls(request):
    """{"calls": [...], "in_flight": n, "in_flight_max": n}: what the hooks
    were sent (headers, body) and answered, oldest first."""
    with _lock:
        return JsonResponse({"calls": list(_calls), "in_flight": _in_flight,
                             "in_flight_max": _in_flight_max})


@endpoint
def calls_reset(request):
    global _in_flight_max
    with _lock:
        _calls.clear()
        _in_flight_max = _in_flight
    return JsonResponse({})
