"""The site's own pages: session login and logout, as any Django site has."""
from django.contrib.auth import authenticate, login, logout
from django.http import HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST

LOGIN_FORM = """<!doctype html><title>Log in</title>
<form method="post" action="/accounts/login/">
<input type="hidden" name="csrfmiddlewaretoken" value="{}">
<input type="hidden" name="next" value="{}">
<p>{}</p>
<label>Username <input name="username"></label>
<label>Password <input name="password" type="password"></label>
<button>Log in</button></form>
"""


@ensure_csrf_cookie
def login_view(request):
    """GET: the form (sets the csrftoken cookie). POST username, password and
    csrfmiddlewaretoken: sets the sessionid cookie and redirects to next."""
    next_url = request.POST.get("next") or request.GET.get("next") or "/"
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = "/"
    message, status = "", 200
    if request.method == "POST":
        user = authenticate(request, username=request.POST.get("username", ""),
                            password=request.POST.get("password", ""))
        if user is not None:
            login(request, user)  # new session key, new CSRF token
            return redirect(next_url)
        message, status = "Wrong username or password.", 401
    return HttpResponse(format_html(LOGIN_FORM, get_token(request), next_url, message),
                        status=status)


@require_POST
def logout_view(request):
    """POST (with the CSRF token): ends the session (its row is deleted)."""
    logout(request)
    return redirect("/accounts/login/")


def home(request):
    user = request.user
    return JsonResponse({"user": user.pk if user.is_authenticated else None,
                         "name": user.username if user.is_authenticated else None})
