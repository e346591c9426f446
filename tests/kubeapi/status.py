"""Errors as the Kubernetes API answers them: a ``Status`` object (``kind: Status``) with the
HTTP code, a machine-readable ``reason`` and ``details`` (name, group, kind, causes).

Every refusal in the double is a :class:`KubeError` raised where the problem is found and turned
into a response at the one place requests are answered (:mod:`.app`); the messages follow the
real API server's wording, which clients and people grep for.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Obj",
    "KubeError",
    "already_exists",
    "bad_request",
    "conflict",
    "gone",
    "invalid",
    "not_found",
    "success",
]

#: A JSON object as the double reads and writes it.
Obj = dict[str, Any]


class KubeError(Exception):
    """A refusal: ``code`` (HTTP), ``reason`` (``NotFound``, ``Conflict``...), the message, and
    the Status ``details``."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> Obj:
        """The ``Status`` object of this refusal."""
        status: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def _details(group_resource: str, name: str | None, **more: Any) -> Obj:
    resource, _, group = group_resource.partition(".")
    details: Obj = {"kind": resource, **more}
    if name is not None:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def not_found(group_resource: str, name: str) -> KubeError:
    return KubeError(
        404, "NotFound", f'{group_resource} "{name}" not found', _details(group_resource, name)
    )


def already_exists(group_resource: str, name: str) -> KubeError:
    return KubeError(
        409,
        "AlreadyExists",
        f'{group_resource} "{name}" already exists',
        _details(group_resource, name),
    )


def conflict(group_resource: str, name: str, why: str) -> KubeError:
    return KubeError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {group_resource} "{name}": {why}',
        _details(group_resource, name),
    )


def invalid(kind_group: str, name: str, causes: list[tuple[str, str]]) -> KubeError:
    """422: ``causes`` are (field, what is wrong with it)."""
    listed = ", ".join(f"{field}: {why}" for field, why in causes)
    return KubeError(
        422,
        "Invalid",
        f'{kind_group} "{name}" is invalid: [{listed}]',
        _details(
            kind_group,
            name,
            causes=[
                {"reason": "FieldValueInvalid", "message": why, "field": field}
                for field, why in causes
            ],
        ),
    )


def gone(message: str) -> KubeError:
    return KubeError(410, "Expired", message)


def bad_request(message: str) -> KubeError:
    return KubeError(400, "BadRequest", message)


def success(group_resource: str, name: str, uid: str) -> Obj:
    """The ``Status`` of a deletion that returns no object."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": _details(group_resource, name, uid=uid),
    }
