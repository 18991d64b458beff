"""manage.py adduser NAME PASSWORD [--id N] [--superuser]: creates the user,
or sets the password of an existing one."""
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a user with a password (or reset an existing user's password)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("password")
        parser.add_argument("--id", type=int, help="the user's id (primary key)")
        parser.add_argument("--superuser", action="store_true")

    def handle(self, username, password, id=None, superuser=False, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(username=username)
            if id is not None:
                user.pk = id
        user.is_superuser = user.is_staff = superuser
        user.set_password(password)
        user.save()
        self.stdout.write(f"{user.username} {user.pk}")
