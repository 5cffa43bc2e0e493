"""What the audit log says a request asked for, readable and bounded:
`big-chat nodes=gpu-a,gpu-b serial=1 check`, not cut protobuf text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

SECRET_FIELDS = ("token", "csr_pem", "key_pem")
BULKY_FIELDS = ("content",)  # a whole file: its size only
PRIMARY = ("configuration", "name", "service", "id", "identity")  # shown without `key=`
DETAIL_CHARS = 300
VALUE_CHARS = 48
LIST_ITEMS = 5


def cut(text: str, most: int = VALUE_CHARS) -> str:
    """One line, at most `most` characters; a cut shows as '...'."""
    flat = " ".join(text.split()) if text.isprintable() else repr(text)[1:-1]
    return flat if len(flat) <= most else flat[: most - 3] + "..."


def scalar(field: FieldDescriptor, value: Any) -> str:
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = field.enum_type.values_by_number if field.enum_type is not None else {}
        text = known[value].name if value in known else str(value)
        return text.split("_", 1)[1].lower() if "_" in text else text.lower()  # ROLE_AGENT
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return cut(str(value))


def repeated(field: FieldDescriptor) -> bool:
    flag: Any = getattr(field, "is_repeated", None)  # protobuf 5.28+; `label` before
    return bool(flag) if flag is not None else getattr(field, "label", 0) == 3


def listing(items: list[str]) -> str:
    shown = ",".join(items[:LIST_ITEMS])
    more = len(items) - LIST_ITEMS
    return cut(shown, VALUE_CHARS * 2) + (f" (+{more} more)" if more > 0 else "")


def parts(message: Message) -> Iterator[str]:
    """`key=value` for each field that is set; nested messages (Targets) flattened."""
    for field, value in message.ListFields():
        name = field.name
        if name in SECRET_FIELDS:
            yield f"{name}=<redacted>"
        elif name in BULKY_FIELDS:
            yield f"{name}=<{len(value)} characters>"
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            yield f"{name}={listing([f'{k}={cut(str(v))}' for k, v in sorted(value.items())])}"
        elif repeated(field):
            if field.message_type is not None:
                yield f"{name}=<{len(value)} items>"
            else:
                yield f"{name}={listing([scalar(field, v) for v in value])}"
        elif field.message_type is not None:
            yield from parts(value)
        elif value is True:
            yield name
        else:
            yield f"{name}={scalar(field, value)}"


def summarize(request: object) -> str:
    """The request's parameters in one bounded line, secrets redacted; '' for a non-message."""
    if not isinstance(request, Message):
        return ""
    found = list(parts(request))
    # The first of configuration, name... leads, bare: `big-chat nodes=gpu-a`.
    lead = next((p for p in found if p.partition("=")[0] in PRIMARY), None)
    if lead is not None:
        found = [lead.partition("=")[2], *(p for p in found if p is not lead)]
    line = " ".join(found)
    return line if len(line) <= DETAIL_CHARS else line[: DETAIL_CHARS - 3] + "..."
