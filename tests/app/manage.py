#!/usr/bin/env python3
"""The test application's manage.py (Django's own, unchanged but for the
settings module): migrate, adduser, runserver."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "awxlike.settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
