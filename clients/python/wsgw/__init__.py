"""wsgw - emit events to wsgw groups from Python (clients/python/README.md).

Owns: the package's public names and the process's default Emitter behind
emit(). Must not: connect at import (a Django settings module imports us
before any broker is reachable).

    from wsgw import Emitter, emit, EmitError, Refused, Unconfirmed, BrokerUnavailable
    emit("jobs-status_changed", {"status": "running"})   # url from $WSGW_AMQP_URL
"""

import atexit
import os
import threading

from .emitter import Emitter
from .errors import BrokerUnavailable, EmitError, Refused, Unconfirmed

__all__ = ["Emitter", "emit", "emit_many", "default_emitter", "EmitError", "Refused",
           "Unconfirmed", "BrokerUnavailable"]
__version__ = "0.1.0"

_default = None
_default_pid = None
_default_lock = threading.Lock()


def default_emitter():
    """The process's Emitter (URL from $WSGW_AMQP_URL, read at first use; a
    forked child makes its own). Closed at interpreter exit."""
    global _default, _default_pid
    with _default_lock:
        if _default is None or _default_pid != os.getpid():
            _default, _default_pid = Emitter(), os.getpid()
        return _default


def emit(group, payload):
    """Emitter.emit on the default emitter."""
    default_emitter().emit(group, payload)


def emit_many(events):
    """Emitter.emit_many on the default emitter."""
    return default_emitter().emit_many(events)


@atexit.register
def _close_default():
    if _default is not None and _default_pid == os.getpid():
        _default.close()
