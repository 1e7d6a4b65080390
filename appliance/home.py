"""The deployment home: where a Visionality deployment keeps its config, keys, CA and ledger.

Selected by ``--home`` or ``VISIONALITY_HOME``; default ``~/.visionality``. Layout::

    visionality.toml        config (deployment id, listeners, providers, caps, PII policy)
    keys/signing.paserk     Ed25519 deployment key as PASERK k4.secret (mode 0600)
    ca/                     mitmproxy confdir: the deployment CA (secret key never leaves it)
    revocations.jsonl       append-only revocation list, watched by running appliances
    keys.jsonl              append-only registry of issued keys (claims only, never the token)
    ledger/                 write-once commit files, WAL, checkpoints, events
    run/                    addresses each running appliance bound (for `budget status`)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey, VerifyKey

from .errors import ConfigError
from .paserk import parse_k4_secret

__all__ = ["Home", "resolve_home", "HOME_ENV"]

HOME_ENV = "VISIONALITY_HOME"


def resolve_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".visionality").resolve()


@dataclass(frozen=True, slots=True)
class Home:
    root: Path

    @classmethod
    def locate(cls, explicit: str | os.PathLike[str] | None = None) -> Home:
        return cls(resolve_home(explicit))

    @property
    def config_path(self) -> Path:
        return self.root / "visionality.toml"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def signing_key_path(self) -> Path:
        return self.keys_dir / "signing.paserk"

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def revocations_path(self) -> Path:
        return self.root / "revocations.jsonl"

    @property
    def key_registry_path(self) -> Path:
        return self.root / "keys.jsonl"

    @property
    def ledger_dir(self) -> Path:
        return self.root / "ledger"

    def listeners_path(self, appliance_id: str) -> Path:
        """Where a running appliance records the addresses it actually bound (port 0 included)."""
        return self.root / "run" / f"{appliance_id}.listeners.json"

    def require(self) -> None:
        """Raise a clear error when the home has not been initialised."""
        if not self.config_path.is_file():
            raise ConfigError(
                f"no Visionality deployment at {self.root} (missing {self.config_path.name}); "
                "run `visionality init` first, or point --home / VISIONALITY_HOME at one"
            )

    def signing_key(self) -> SigningKey:
        """The deployment's Ed25519 key, stored as PASERK ``k4.secret.<b64url(seed || pk)>``."""
        try:
            text = self.signing_key_path.read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the deployment signing key {self.signing_key_path}: {e}") from e
        try:
            raw = parse_k4_secret(text)  # checks the prefix, the length and that the public half matches
        except ConfigError as e:
            raise ConfigError(f"{self.signing_key_path}: {e}") from e
        return SigningKey(raw[:32])

    def verify_key(self) -> VerifyKey:
        return self.signing_key().verify_key
