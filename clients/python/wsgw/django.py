"""wsgw.django - AWX's emit_channel_notification(group, payload) on wsgw.

Owns: the Django-side conveniences: the broker URL from settings.WSGW_AMQP_URL
(else $WSGW_AMQP_URL), serialization with DjangoJSONEncoder (datetimes,
Decimals, UUIDs, lazy strings, as AWX's payloads carry), and "group_name"
(the group's part before the first "-") added to a dict payload without one,
as AWX's callers did. Must not: swallow a failure (it is logged and
raised), or import Django settings before the first call (a settings
module may import this).

AWX's callers pass either a dict or already-serialized text; both work.
"""

import json
import logging
import threading

from .emitter import Emitter

logger = logging.getLogger("wsgw.django")

_emitter = None
_emitter_url = None
_lock = threading.Lock()


def _get_emitter():
    """One Emitter per process for the configured URL (a change of
    settings.WSGW_AMQP_URL, e.g. override_settings in a test, gets a new one)."""
    global _emitter, _emitter_url
    from django.conf import settings
    url = getattr(settings, "WSGW_AMQP_URL", None) or None  # None: $WSGW_AMQP_URL
    timeout = getattr(settings, "WSGW_EMIT_TIMEOUT", 30)
    with _lock:
        if _emitter is None or _emitter_url != url:
            old, _emitter = _emitter, Emitter(url, timeout=timeout)
            _emitter_url = url
            if old is not None:
                old.close()
        return _emitter


def emit_channel_notification(group, payload):
    """Emits payload to group, waiting for the broker's confirm. Raises
    ValueError (invalid group or payload) or a wsgw.EmitError (logged first)."""
    from django.core.serializers.json import DjangoJSONEncoder
    if isinstance(payload, dict) and "group_name" not in payload:
        payload = {**payload, "group_name": str(group).split("-", 1)[0]}
    if isinstance(payload, (str, bytes, bytearray)):
        body, check = payload, True
    else:
        body, check = json.dumps(payload, cls=DjangoJSONEncoder), False
    try:
        emitter = _get_emitter()
        if check:
            emitter.emit(group, body)
        else:
            emitter._emit_encoded(group, body)
    except Exception as e:  # invalid input and configuration too: said, then raised
        logger.error("wsgw: emitting to %s failed: %s", group, e)
        raise
