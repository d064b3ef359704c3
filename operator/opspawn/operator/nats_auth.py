"""NATS credentials: the operator mints a user per task, and nats-server enforces what it may do.

Why decentralized JWT/nkeys, not auth callout
    With JWTs the server checks every credential by itself, offline: a user JWT signed by the
    account's signing key carries its permissions and its expiry, and nats-server refuses
    everything else. Nothing of the operator sits on the connection path, so a stopped or
    restarted operator never locks runners out (they keep publishing; JetStream holds the
    events), and no service of ours has to be highly available for NATS to accept a
    connection. Auth callout would make the operator an online dependency of every connect
    and a second service to secure. The price is revocation by expiry: a runner's credential
    ends at the task's last possible deadline (`runner_credential_lifetime`), and it can do
    nothing but publish its own task's events until then.

The trust chain
    operator key → account `OPSPAWN` (JetStream enabled, declares the signing key) → users.
    nats-server holds the operator JWT and the account JWT (a memory resolver preloads it);
    the operator process holds only the account's public key and the account *signing* key's
    seed (`NatsIssuer`), which can mint users but cannot change the account. The dev stack
    creates the whole chain (`TrustChain.generate`); an existing NATS is configured from
    `server_config`, see docs/install.md "Using an existing NATS".

Who may do what (enforced by nats-server, see `runner_permissions`, `operator_permissions`)
    - a runner: publish to `opspawn.events.<namespace>.<task-uid>` and nothing else;
      subscribe only to its own inbox prefix `_INBOX_RUNNER.<task-uid>.>` (`runner_inbox`),
      where JetStream's publish acknowledgements arrive. No `$JS.API.>`, no other subject,
      no reading of events.
    - the operator: the JetStream API (stream and consumer management, fetching), acks of the
      event stream, and its own `_INBOX.>`.

Wire formats follow the nkeys and NATS JWT v2 specifications: seeds and public keys are base32
of a prefix byte, the 32 key bytes and a CRC-16 (the `nkeys` package), and a JWT is
`base64url(header).base64url(claims).base64url(ed25519 signature)` with the header
`{"typ":"JWT","alg":"ed25519-nkey"}`, the claims' `jti` being the base32 SHA-256 of the
claims without it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import nkeys
from nats.aio.client import RawCredentials

from opspawn.api.events import MAX_EVENT_BYTES, STREAM_NAME, event_subject, runner_inbox

ACCOUNT_NAME = "OPSPAWN"
OPERATOR_INBOX_PREFIX = "_INBOX"
_JWT_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_UNLIMITED = -1
RUNNER_MAX_PAYLOAD = MAX_EVENT_BYTES + 4096
"""Largest message a runner may send: the largest event and room for its headers."""
RUNNER_MAX_SUBSCRIPTIONS = 8


class NatsCredentialError(ValueError):
    """A seed, key or JWT that cannot be used (the message never contains the secret)."""


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, repr=False)
class NKey:
    """An Ed25519 nkey: its seed (secret) and public key. The seed never appears in a repr."""

    seed: bytes
    public_key: str

    @classmethod
    def generate(cls, prefix: int) -> NKey:
        """A new key of a role (`nkeys.PREFIX_BYTE_OPERATOR`, `_ACCOUNT` or `_USER`)."""
        return cls.from_seed(nkeys.encode_seed(os.urandom(32), prefix))

    @classmethod
    def from_seed(cls, seed: bytes) -> NKey:
        try:
            pair = nkeys.from_seed(bytearray(seed.strip()))
            public = pair.public_key.decode()
        except Exception:
            raise NatsCredentialError("not an nkey seed") from None
        return cls(seed=bytes(seed.strip()), public_key=public)

    def sign(self, data: bytes) -> bytes:
        return bytes(nkeys.from_seed(bytearray(self.seed)).sign(data))

    def __repr__(self) -> str:
        return f"NKey({self.public_key})"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(claims: dict[str, Any], issuer: NKey) -> str:
    """A NATS v2 JWT of `claims`, issued (`iss`) and signed by `issuer`."""
    body = {**claims, "iss": issuer.public_key, "iat": int(time.time()), "jti": ""}
    digest = hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).digest()
    body["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    header = _b64url(json.dumps(_JWT_HEADER, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(body, separators=(",", ":")).encode())
    signature = _b64url(issuer.sign(f"{header}.{payload}".encode()))
    return f"{header}.{payload}.{signature}"


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (for reading what was issued, e.g. in tests)."""
    try:
        payload = token.split(".")[1]
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    except (IndexError, ValueError):
        raise NatsCredentialError("not a JWT") from None
    return claims


def credentials_file(user_jwt: str, user: NKey) -> str:
    """The `.creds` text nats clients read (`user_credentials`): the JWT and the user seed."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )


# --------------------------------------------------------------------------- permissions


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def claims(self) -> dict[str, Any]:
        return {"pub": {"allow": list(self.publish)}, "sub": {"allow": list(self.subscribe)}}


def runner_permissions(namespace: str, task_uid: str) -> Permissions:
    """A runner publishes its own task's events and hears only its publish acknowledgements."""
    return Permissions(
        publish=(event_subject(namespace, task_uid),),
        subscribe=(f"{runner_inbox(task_uid)}.>",),
    )


def operator_permissions() -> Permissions:
    """The operator manages the stream and its consumer, fetches and acks events."""
    return Permissions(
        publish=("$JS.API.>", f"$JS.ACK.{STREAM_NAME}.>"),
        subscribe=(f"{OPERATOR_INBOX_PREFIX}.>",),
    )


# --------------------------------------------------------------------------- issuing users


class NatsIssuer:
    """Mints user credentials of the OPSPAWN account with its signing key."""

    def __init__(self, account_public_key: str, signing_key: NKey) -> None:
        if not account_public_key.startswith("A"):
            raise NatsCredentialError("the account's public key must start with 'A'")
        self.account = account_public_key
        self._signing_key = signing_key

    @classmethod
    def from_seed_text(cls, account_public_key: str, seed: str | bytes) -> NatsIssuer:
        key = NKey.from_seed(seed.encode() if isinstance(seed, str) else seed)
        if not key.public_key.startswith("A"):
            raise NatsCredentialError("the signing key must be an account key (seed 'SA…')")
        return cls(account_public_key.strip(), key)

    def user(
        self,
        name: str,
        permissions: Permissions,
        expires_at: float | None,
        *,
        max_payload: int = _UNLIMITED,
        max_subscriptions: int = _UNLIMITED,
    ) -> str:
        """A new user's `.creds` text, valid until `expires_at` (epoch seconds; None: forever),
        its messages at most `max_payload` bytes, with at most `max_subscriptions` at once."""
        user = NKey.generate(nkeys.PREFIX_BYTE_USER)
        nats: dict[str, Any] = {
            **permissions.claims(),
            "subs": max_subscriptions,
            "data": _UNLIMITED,
            "payload": max_payload,
            "issuer_account": self.account,
            "type": "user",
            "version": 2,
        }
        claims: dict[str, Any] = {"name": name, "sub": user.public_key, "nats": nats}
        if expires_at is not None:
            claims["exp"] = int(expires_at)
        return credentials_file(encode_jwt(claims, self._signing_key), user)

    def runner_credentials(self, namespace: str, task_uid: str, expires_at: float) -> str:
        """A runner's user: its own subject and inbox, no message larger than an event may be
        (`RUNNER_MAX_PAYLOAD`), a few subscriptions (it needs one, for its acks)."""
        return self.user(
            f"runner {namespace}/{task_uid}",
            runner_permissions(namespace, task_uid),
            expires_at,
            max_payload=RUNNER_MAX_PAYLOAD,
            max_subscriptions=RUNNER_MAX_SUBSCRIPTIONS,
        )

    def operator_credentials(self) -> str:
        return self.user("opspawn-operator", operator_permissions(), None)


def runner_credential_lifetime(
    timeout_seconds: int, deadline_grace_seconds: int, retries: int, backoff_max_seconds: int
) -> int:
    """Seconds a task's runner credential must stay valid: the per-task Secret (and with it the
    credential) serves every attempt, so it covers each attempt's deadline plus grace, the
    backoffs between them, and an hour for queueing and slow starts."""
    attempts = retries + 1
    return (
        attempts * (timeout_seconds + deadline_grace_seconds) + retries * backoff_max_seconds + 3600
    )


# --------------------------------------------------------------------------- the trust chain


@dataclass(frozen=True)
class TrustChain:
    """Operator and account JWTs for nats-server, and the account signing key for the operator.

    The dev stack and tests generate one per server; for a NATS of your own, build the same with
    `nsc` (docs/install.md)."""

    operator_jwt: str
    account_public_key: str
    account_jwt: str
    signing_key: NKey
    system_account_public_key: str
    """nats-server's own account (JetStream's internal subscriptions need one)."""
    system_account_jwt: str

    @classmethod
    def generate(cls) -> TrustChain:
        operator = NKey.generate(nkeys.PREFIX_BYTE_OPERATOR)
        system = NKey.generate(nkeys.PREFIX_BYTE_ACCOUNT)
        account = NKey.generate(nkeys.PREFIX_BYTE_ACCOUNT)
        signing = NKey.generate(nkeys.PREFIX_BYTE_ACCOUNT)
        operator_jwt = encode_jwt(
            {
                "name": "opspawn",
                "sub": operator.public_key,
                "nats": {
                    "system_account": system.public_key,
                    "type": "operator",
                    "version": 2,
                },
            },
            operator,
        )
        system_jwt = encode_jwt(
            {"name": "SYS", "sub": system.public_key, "nats": {"type": "account", "version": 2}},
            operator,
        )
        limits = {
            "subs": _UNLIMITED,
            "data": _UNLIMITED,
            "payload": _UNLIMITED,
            "imports": _UNLIMITED,
            "exports": _UNLIMITED,
            "wildcards": True,
            "conn": _UNLIMITED,
            "leaf": _UNLIMITED,
            "mem_storage": _UNLIMITED,
            "disk_storage": _UNLIMITED,
            "streams": _UNLIMITED,
            "consumer": _UNLIMITED,
        }
        account_jwt = encode_jwt(
            {
                "name": ACCOUNT_NAME,
                "sub": account.public_key,
                "nats": {
                    "limits": limits,
                    "signing_keys": [signing.public_key],
                    "default_permissions": {"pub": {}, "sub": {}},
                    "type": "account",
                    "version": 2,
                },
            },
            operator,
        )
        return cls(
            operator_jwt, account.public_key, account_jwt, signing, system.public_key, system_jwt
        )

    def issuer(self) -> NatsIssuer:
        return NatsIssuer(self.account_public_key, self.signing_key)

    def server_config(self) -> str:
        """The nats-server configuration lines that trust this chain (memory resolver)."""
        return (
            f"operator: {self.operator_jwt}\n"
            f"system_account: {self.system_account_public_key}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f"  {self.system_account_public_key}: {self.system_account_jwt}\n"
            f"  {self.account_public_key}: {self.account_jwt}\n"
            "}\n"
        )


def connect_options(credentials: str | None) -> dict[str, Any]:
    """Keyword arguments of `nats.connect` that log in with `.creds` text (none without auth)."""
    return {} if credentials is None else {"user_credentials": RawCredentials(credentials)}
