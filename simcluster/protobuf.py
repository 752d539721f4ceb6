"""Request bodies in Kubernetes' protobuf encoding, read as the JSON the REST layer takes.

client-go's typed clients may send core objects as `application/vnd.kubernetes.protobuf`: helm's
release storage writes its Secrets so. The simulation answers in JSON (which client-go reads
whatever it asked for) and decodes the request bodies it is sent: a `k8s\\x00` envelope
(`runtime.Unknown`: type meta and the raw message), then the message by the field numbers of
`k8s.io/api/core/v1/generated.proto` and `apimachinery/pkg/apis/meta/v1/generated.proto`. Only
the kinds listed in `_MESSAGES` are read; any other is refused with 415, as an API server
refuses a body it cannot decode.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

__all__ = ["MEDIA_TYPE", "Undecodable", "decode"]

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"

JSON = dict[str, Any]


class Undecodable(ValueError):
    """A protobuf body the simulation does not read (a kind it has no message for)."""


def decode(body: bytes) -> JSON:
    """The object in a protobuf request body, as its JSON form."""
    if not body.startswith(_MAGIC):
        raise Undecodable("the body is not a Kubernetes protobuf envelope")
    unknown = _fields(body[len(_MAGIC):])
    type_meta = _fields(unknown.get(1, [b""])[0])
    api_version = _text(type_meta.get(1))
    kind = _text(type_meta.get(2))
    reader = _MESSAGES.get((api_version, kind))
    if reader is None:
        raise Undecodable(f"{kind or 'an object'} ({api_version or 'no apiVersion'}) in protobuf "
                          "is not served by the simulation; send JSON")
    obj = reader(unknown.get(2, [b""])[0])
    return {"apiVersion": api_version, "kind": kind, **obj}


# -- wire format ----------------------------------------------------------------------------

def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data):
            raise Undecodable("a protobuf varint runs past the end of the body")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise Undecodable("a protobuf varint is too long")


def _pairs(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, value
        elif wire == 2:
            length, at = _varint(data, at)
            if at + length > len(data):
                raise Undecodable("a protobuf field runs past the end of the body")
            yield number, data[at:at + length]
            at += length
        elif wire == 1:
            yield number, data[at:at + 8]
            at += 8
        elif wire == 5:
            yield number, data[at:at + 4]
            at += 4
        else:
            raise Undecodable(f"protobuf wire type {wire} is not read")


def _fields(data: bytes) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for number, value in _pairs(data):
        out.setdefault(number, []).append(value)
    return out


def _text(values: list[Any] | None) -> str:
    return bytes(values[-1]).decode("utf-8") if values else ""


def _map(values: list[Any] | None, value: Callable[[bytes], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in values or []:
        fields = _fields(entry)
        out[_text(fields.get(1))] = value(fields.get(2, [b""])[-1])
    return out


def _string(data: bytes) -> str:
    return data.decode("utf-8")


def _time(data: bytes) -> str:
    fields = _fields(data)
    seconds = fields.get(1, [0])[-1]
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- messages -------------------------------------------------------------------------------

def _object_meta(data: bytes) -> JSON:
    fields = _fields(data)
    meta: JSON = {}
    for number, name in ((1, "name"), (2, "generateName"), (3, "namespace"), (5, "uid"),
                         (6, "resourceVersion")):
        if number in fields:
            meta[name] = _text(fields[number])
    if 8 in fields:
        meta["creationTimestamp"] = _time(fields[8][-1])
    if 11 in fields:
        meta["labels"] = _map(fields[11], _string)
    if 12 in fields:
        meta["annotations"] = _map(fields[12], _string)
    if 14 in fields:
        meta["finalizers"] = [bytes(v).decode() for v in fields[14]]
    return meta


def _secret(data: bytes) -> JSON:
    fields = _fields(data)
    obj: JSON = {"metadata": _object_meta(fields.get(1, [b""])[-1])}
    if 2 in fields:
        obj["data"] = _map(fields[2], lambda raw: base64.b64encode(raw).decode())
    if 3 in fields:
        obj["type"] = _text(fields[3])
    if 4 in fields:
        obj["stringData"] = _map(fields[4], _string)
    if 5 in fields:
        obj["immutable"] = bool(fields[5][-1])
    return obj


def _config_map(data: bytes) -> JSON:
    fields = _fields(data)
    obj: JSON = {"metadata": _object_meta(fields.get(1, [b""])[-1])}
    if 2 in fields:
        obj["data"] = _map(fields[2], _string)
    if 3 in fields:
        obj["binaryData"] = _map(fields[3], lambda raw: base64.b64encode(raw).decode())
    return obj


def _delete_options(data: bytes) -> JSON:
    fields = _fields(data)
    obj: JSON = {}
    if 1 in fields:
        obj["gracePeriodSeconds"] = int(fields[1][-1])
    if 4 in fields:
        obj["propagationPolicy"] = _text(fields[4])
    return obj


_MESSAGES: dict[tuple[str, str], Callable[[bytes], JSON]] = {
    ("v1", "Secret"): _secret,
    ("v1", "ConfigMap"): _config_map,
    ("v1", "DeleteOptions"): _delete_options,
    ("meta.k8s.io/v1", "DeleteOptions"): _delete_options,
}
