"""Notification rules of a launch plan: when its executions end in one of ``phases``, a message on one
channel. Secrets are references (``env:NAME``, ``file:PATH``), never values; admin resolves and checks every
rule at registration, as it does for YAML files::

    LaunchPlan(train, name="nightly", notifications=[
        on_slack(["FAILED", "TIMED_OUT"], webhook_url="env:SLACK_WEBHOOK_URL"),
        on_webhook(["SUCCEEDED"], url="https://hooks.example.com/aloft", secret="env:ALOFT_HOOK_KEY"),
    ])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aloft.definition import DefinitionError, _caller_location

# The phases an execution ends in: what a rule may name, and what `aloft.Remote` waits for.
TERMINAL_PHASES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def _phases(phases: Sequence[str]) -> list[str]:
    unknown = [phase for phase in phases if phase not in TERMINAL_PHASES]
    if unknown or not phases:
        named = ", ".join(TERMINAL_PHASES)
        raise DefinitionError(
            f"{_caller_location()}: a notification names one or more of {named}; given {list(phases)}"
        )
    return list(phases)


def on_slack(phases: Sequence[str], *, webhook_url: str) -> dict[str, Any]:
    """A Slack message through an incoming webhook (the URL is itself the secret: a reference)."""
    return {"phases": _phases(phases), "slack": {"webhook_url": webhook_url}}


def on_webhook(phases: Sequence[str], *, url: str, secret: str | None = None) -> dict[str, Any]:
    """A JSON POST to ``url``, signed with HMAC-SHA256 under ``secret`` (a reference) when given."""
    channel: dict[str, Any] = {"url": url}
    if secret is not None:
        channel["secret"] = secret
    return {"phases": _phases(phases), "webhook": channel}


def on_email(
    phases: Sequence[str],
    *,
    to: Sequence[str],
    sender: str,
    smtp: dict[str, Any],
    subject: str | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """An email through ``smtp`` (``host``, ``port``, ``tls``, ``username``/``password`` references, ...)."""
    channel: dict[str, Any] = {"to": list(to), "from": sender, "smtp": dict(smtp)}
    if subject is not None:
        channel["subject"] = subject
    if body is not None:
        channel["body"] = body
    return {"phases": _phases(phases), "email": channel}
