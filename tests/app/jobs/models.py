"""Jobs and who may see them: AWX's unified jobs and its RBAC, reduced to a
grant table. A user sees a job's events when a JobGrant names them (or they
are a superuser)."""
from django.conf import settings
from django.db import models


class Job(models.Model):
    """A job (AWX: a unified job; its events go to group job_events-<id>)."""
    name = models.CharField(max_length=200, default="")
    created = models.DateTimeField(auto_now_add=True)


class JobGrant(models.Model):
    """user may see job (the object-permission table)."""
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    job = models.ForeignKey(Job, on_delete=models.CASCADE)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "job"], name="one_grant")]


class ApiToken(models.Model):
    """A personal API token (AWX: an OAuth2 token), sent as
    Authorization: Bearer <key> by non-browser clients."""
    key = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    expires = models.DateTimeField()
