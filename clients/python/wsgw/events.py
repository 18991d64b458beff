"""wsgw.events - turning (group, payload) into what goes on the wire.

Owns: the group-name rule (the same as proto/chan_group.c: 1-128 of
A-Z a-z 0-9 _ . : -), and the payload rule: dict/list (any JSON value but
str and bytes) -> compact json.dumps; str -> its exact UTF-8; bytes -> exactly
those bytes. Text and bytes must be valid UTF-8 and one JSON document
(browsers JSON.parse what they receive). Must not: touch the network.

Cost: a str or bytes payload is parsed once to check it (json.loads; about
1 us per 100 bytes); a dict is only serialized, never re-parsed.
"""

import json
import re

GROUP_NAME_MAX = 128
_GROUP = re.compile(r"[A-Za-z0-9_.:\-]{1,%d}" % GROUP_NAME_MAX)


def check_group(group):
    """Returns group, or raises ValueError saying what a name may hold."""
    if not isinstance(group, str) or not _GROUP.fullmatch(group):
        raise ValueError(f"invalid group name {group!r}: 1-{GROUP_NAME_MAX} characters of "
                         "A-Z a-z 0-9 _ . : - (e.g. 'jobs-status_changed', 'job_events-42')")
    return group


def _no_constant(name):
    # NaN and Infinity are Python's extensions; JSON.parse refuses them.
    raise ValueError(f"{name} is not JSON")


def _check_json(text, group):
    try:
        json.loads(text, parse_constant=_no_constant)
    except ValueError as e:
        raise ValueError(f"event for {group} is not JSON: {e}") from None


def encode(group, payload, check=True):
    """The event's body (bytes) for group; ValueError (nothing sent) when the
    group name or the payload is invalid. check=False skips the JSON check
    of text this library serialized itself."""
    check_group(group)
    if isinstance(payload, str):
        try:
            body = payload.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate
            raise ValueError(f"event for {group} is not valid UTF-8: {e}") from None
        if check:
            _check_json(payload, group)
        return body
    if isinstance(payload, (bytes, bytearray, memoryview)):
        body = bytes(payload)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"event for {group} is not valid UTF-8: {e}") from None
        if check:
            _check_json(text, group)
        return body
    # dict, list, numbers...: TypeError (from json) for what JSON cannot hold.
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError as e:  # NaN / Infinity, circular reference
        raise ValueError(f"event for {group} cannot be JSON: {e}") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate in a string of it
        raise ValueError(f"event for {group} is not valid UTF-8: {e}") from None
