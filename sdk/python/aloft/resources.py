"""What a task asks for besides its inputs: compute resources and secrets, as their spec documents say."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Resources:
    """What an attempt asks for: ``Resources(cpu="2", memory="4Gi", gpu=1)`` (Kubernetes quantities)."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int | None = None
    accelerator: str | None = None
    ephemeral_storage: str | None = None
    limits: dict[str, str] | None = None
    pools: dict[str, int] | None = None

    def spec(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


@dataclasses.dataclass(frozen=True)
class Secret:
    """A secret the task gets at attempt start: as ``env`` or as ``file`` in ``$ALOFT_SECRETS_DIR``."""

    name: str
    env: str | None = None
    file: str | None = None

    def spec(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}
