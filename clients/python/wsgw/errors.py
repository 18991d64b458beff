"""wsgw.errors - what an emit can fail with.

Owns: the exception classes and what each promises about delivery. Must not:
decide when they are raised (wsgw.emitter does).

Invalid input (a bad group name, text that is not JSON, bytes that are not
UTF-8) raises ValueError before anything is sent: it is the caller's bug,
not the broker's, and retrying cannot help.
"""


class EmitError(Exception):
    """An event (or several) was not confirmed by the broker.

    reason     the broker's or the connection's words
    confirmed  how many events of the call the broker confirmed
    failed     indexes (into the call's events, 0 for emit()) of the events
               not confirmed: refused, sent but unanswered, or not sent
    """

    def __init__(self, reason, confirmed=0, failed=()):
        self.reason = reason
        self.confirmed = confirmed
        self.failed = list(failed)
        n = len(self.failed)
        if n:
            msg = f"{n} of {n + confirmed} events not confirmed by the broker: {reason}"
        else:
            msg = reason
        super().__init__(msg)


class BrokerUnavailable(EmitError):
    """No connection to any broker address: nothing of this call was sent.
    Safe to retry."""


class Refused(EmitError):
    """The broker said no: a nack (it could not route the event to every
    queue bound at that moment; in a cluster the others may have got it),
    or it closed the channel (reply_code 404: the exchange does not exist;
    403: this user may not write to it). Retrying the same call is refused
    again unless the cause is fixed; re-sending a nacked event may deliver
    it twice to the gateways that did get it."""

    def __init__(self, reason, confirmed=0, failed=(), reply_code=None):
        self.reply_code = reply_code
        super().__init__(reason, confirmed, failed)


class Unconfirmed(EmitError):
    """No confirm in time, or the connection was lost while waiting: the
    events in `failed` may or may not have reached the clients. They are
    never re-sent automatically (clients would see them twice); the caller
    decides (AWX: refetch beats duplicates)."""
