"""API settings: one typed, frozen object from ``CHURNWATCH_*`` variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from api.restrictions import AccountPrefix, AccountScope
from streamer.core.events import MAX_LEN
from streamer.kafka.settings import KafkaSettings

_READ_SCOPES = frozenset({"health:read", "alerts:read"})
_WRITE_SCOPE = "events:write"
# A restriction longer than any fact or account id the worker accepts could never match.
_Restriction = Annotated[str | None, Field(min_length=1, max_length=MAX_LEN)]


class ApiKeySpec(BaseModel):
    """What one API key is called, what it may do and to which accounts; the key is only stored as a hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    scopes: frozenset[str] = frozenset()
    owner: _Restriction = None
    segment: _Restriction = None
    account_prefix: _Restriction = None

    @model_validator(mode="after")
    def _restrictions_apply(self) -> ApiKeySpec:
        for field in ("owner", "segment"):
            if getattr(self, field) is None:
                continue
            if not self.scopes & _READ_SCOPES:
                raise ValueError(
                    f"{field}: restricts reads, but the key has neither health:read nor alerts:read"
                )
            if _WRITE_SCOPE in self.scopes:
                # Events set facts: the key could give any account its owner or segment and then read it.
                raise ValueError(
                    f"{field}: a key restricted by {field} cannot also have events:write (its events could "
                    f"set any account's {field} and so widen what it reads); give writing a key of its own"
                )
        if self.account_prefix is not None and _WRITE_SCOPE not in self.scopes:
            raise ValueError("account_prefix: restricts writes, but the key has no events:write")
        return self

    @property
    def reads(self) -> AccountScope:
        """The accounts the key may read."""
        return AccountScope(owner=self.owner, segment=self.segment)

    @property
    def writes(self) -> AccountPrefix:
        """The accounts the key may write events for."""
        return AccountPrefix(self.account_prefix)


def spec_problems(err: ValidationError) -> str:
    """What is wrong with one key's entry, field by field, on one line."""
    problems = []
    for error in err.errors():
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown field (known: {', '.join(ApiKeySpec.model_fields)})")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def describe_key_error(digest: str, spec: object, err: ValidationError) -> str:
    """:func:`spec_problems`, naming the key by its name and the start of its hash."""
    name = spec.get("name") if isinstance(spec, Mapping) else None
    who = f"key {name!r} ({digest[:12]}…)" if isinstance(name, str) and name else f"key {digest[:12]}…"
    return f"{who}: {spec_problems(err)}"


class ApiSettings(KafkaSettings):
    """Everything the API can be told; documented in the README's configuration table."""

    events_topic: str = Field("usage-events", description="Where HTTP ingest produces events.")
    health_topic: str = Field("account-health", description="The health snapshots the API serves.")
    api_host: str = Field("127.0.0.1", description="Interface the API binds to.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")
    api_keys: dict[str, ApiKeySpec] = Field(
        default_factory=dict,
        description='JSON: {"<sha256 hex of the key>": {"name": "...", "scopes": ["health:read"]}}, '
        "optionally restricted by owner, segment (reads) or account_prefix (writes).",
    )
    max_body_bytes: int = Field(1_048_576, ge=1, description="Largest accepted request body.")
    max_batch_items: int = Field(1000, ge=1, description="Most events accepted in one request.")
    max_future_ms: int = Field(
        300_000, ge=0, description="Events stamped further than this ahead of the API's clock are rejected."
    )
    rate_limit_per_s: float = Field(100.0, gt=0, description="Sustained requests per second per key.")
    rate_limit_burst: int = Field(200, ge=1, description="Requests a key may send at once.")
    auth_failure_limit: int = Field(
        20,
        ge=1,
        description="Failed authentications (401) a client address may have at once, and per window; "
        "past them its requests to routes with a key are 429 until the window refills.",
    )
    auth_failure_window_s: float = Field(
        60.0, gt=0, description="Seconds over which a client address regains its failed authentications."
    )
    store_url: SecretStr = Field(
        SecretStr("sqlite:///.local/api/read-store.db"),
        description="Where the API keeps the snapshots, alerts and history it serves: sqlite:///<path> "
        "(a file, created if missing), postgresql://<user>:<password>@<host>:<port>/<database> (shared by "
        "replicas, readable by BI tools), or memory (nothing kept: the topics are read again at each start). "
        "Secret: it may hold a password.",
    )
    history_days: int = Field(
        120, ge=1, description="Days of daily score, band and components kept per account in the store."
    )
    alert_buffer: int = Field(10_000, ge=1, description="Recent alerts kept for the feed.")
    fill_processes: int = Field(
        2,
        ge=0,
        le=32,
        description="Processes that decode, check and turn snapshots into rows while an empty read store "
        "is filled (0: the API process does it, as it always does once the store is filled).",
    )
    head_timeout_s: float = Field(
        10.0, gt=0, description="A connection without a complete request head for this long is closed."
    )
    trusted_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        ("127.0.0.1", "localhost", "::1"),
        min_length=1,
        description="Comma-separated Host header names the API answers to: names, *.example.com for "
        "subdomains, * for any. Others get 400, except /healthz, /readyz and /metrics.",
    )
    ingest_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Longest wait for Kafka to acknowledge ingested events before answering 503 "
        "(with Retry-After); also the timeout of the producer's reachability probe.",
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request body not received whole this many seconds after its head is answered "
        "408 and its connection closed.",
    )
    sse_keepalive_s: float = Field(15.0, gt=0, description="Seconds between SSE keep-alive comments.")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _check_keys(cls, value: Any) -> Any:
        # Pydantic would name a key only by its hash; one message per key, with its name, is found
        # faster among many keys.
        if isinstance(value, Mapping):
            for digest, spec in value.items():
                if isinstance(spec, ApiKeySpec):
                    continue
                try:
                    ApiKeySpec.model_validate(spec)
                except ValidationError as err:
                    raise ValueError(describe_key_error(str(digest), spec, err)) from None
        return value

    @field_validator("trusted_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        # From the environment a comma-separated list ("api.example.com,localhost"), not JSON.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
