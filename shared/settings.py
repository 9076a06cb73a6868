"""Settings read from the environment (prefix ``IPX_``), one object per process."""

from __future__ import annotations

import base64
import binascii
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ServiceName = Literal["listing", "matching", "gateway"]
SERVICE_NAMES: tuple[ServiceName, ...] = ("listing", "matching", "gateway")


class Settings(BaseSettings):
    """Everything configurable. Defaults suit the local launcher; production sets them all."""

    model_config = SettingsConfigDict(env_prefix="IPX_", extra="ignore")

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:54329/ipx"
    # A streaming replica of database_url for reads that tolerate a little lag (the public
    # catalogue's pages, deals and statistics, the incentives report: shared/reads.py). Unset
    # (or empty), every read goes to database_url. A second pool of db_pool_size +
    # db_max_overflow connections per process opens on it.
    database_read_url: str = ""
    # Reads leave a replica further behind than this (replay stalled, a long query holding it
    # back) for the primary until it catches up.
    database_read_max_lag_seconds: float = Field(default=10.0, gt=0)
    db_pool_size: int = 10
    db_max_overflow: int = 10
    # PostgreSQL itself, for the connections a transaction-mode pooler (PgBouncer) cannot
    # carry: every exclusive worker's lease (a session advisory lock on a connection of its
    # own), the LISTEN connections of the feed notifiers, matching's repair lock. Unset (or
    # empty), database_url: see direct_database_url().
    database_direct_url: str = ""
    # database_url goes through PgBouncer in transaction pooling mode: asyncpg's statement
    # cache and SQLAlchemy's prepared statement cache are turned off (shared/db.py).
    db_pgbouncer: bool = False
    meili_url: str = "http://127.0.0.1:7700"
    meili_master_key: SecretStr = SecretStr("")
    # The catalogue index's name (tests give each module its own).
    meili_index: str = "catalogue"
    # More Meilisearch nodes (comma-separated URLs, the same master key), each fed from the
    # change feed by an indexer of its own: read replicas of the one at meili_url (issue 21).
    meili_replica_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A node further behind the primary's last indexed event than this leaves the searches'
    # rotation until it catches up.
    meili_replica_max_lag_seconds: float = Field(default=5.0, gt=0)
    # Background workers (indexer, expiry, deliveries); a process serving only the API can
    # turn them off.
    run_workers: bool = True

    # Service-to-service calls carry this key; listing accepts it as the "service" role.
    service_key: SecretStr = SecretStr("")
    # Bootstrap operator key: lets the first operator in before any key exists in the database.
    operator_key: SecretStr = SecretStr("")
    # Gateway: Fernet keys sealing the signing secrets it stores (shared/encryption.py),
    # comma-separated; the first seals, all open. Required by the gateway.
    secret_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    host: str = "127.0.0.1"
    listing_port: int = 8001
    matching_port: int = 8002
    gateway_port: int = 8000
    # Where the services reach each other. Unset (or empty), each is derived from its port:
    # http://127.0.0.1:<that service's port> (see _derive_urls).
    listing_url: str = "http://127.0.0.1:8001"
    matching_url: str = "http://127.0.0.1:8002"
    gateway_url: str = "http://127.0.0.1:8000"
    # The deployment's public address (what clients and subscribers know it by, e.g.
    # https://api.jjj-ipx.cn); unset, the gateway's URL.
    public_url: str = ""
    # Gateway, outbound webhooks: the User-Agent of every delivery; unset, one that names the
    # sender and links to the public API docs, "ipx-webhooks/1.0 (+<public_url>/docs)".
    webhook_user_agent: str = ""

    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    access_log: bool = True
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    # Request bodies above this are refused with 413; bulk import has its own larger limit.
    max_body_bytes: int = 1024 * 1024
    max_import_bytes: int = 512 * 1024 * 1024
    # The public catalogue's rate limits (requests a minute; benchmarks raise them).
    rate_limit_anonymous_per_minute: int = 600
    rate_limit_key_per_minute: int = 6000
    # How long matching and gateway trust an introspected API key.
    auth_cache_seconds: float = 30.0
    upstream_timeout_seconds: float = 5.0
    # How often listing looks for listings whose right has ended.
    expiry_interval_seconds: float = 3600.0
    # Gateway, outbound webhooks: seconds to wait after the 1st, 2nd, ... failed attempt,
    # comma-separated (e.g. "0.5,1,2"); empty keeps the production schedule (RETRY_SCHEDULE in
    # services/gateway/webhooks/workers.py, more than 24 hours in all). Tests shorten it.
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(default_factory=list)
    # Gateway: how long one delivery attempt may take (resolving, connecting, the answer).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Retention (shared/retention.py): how long finished rows are kept. Gateway: applied and
    # stale partner-inbox rows (the inbox dedupes on the webhook-id only within this window;
    # senders retry for at most a few days), and delivered or failed webhook deliveries with
    # their attempts, except the newest `retention_deliveries_keep` of every subscription.
    # Listing: Idempotency-Key records (a repeat after the window creates again).
    retention_inbox_days: float = Field(default=7.0, gt=0)
    retention_deliveries_days: float = Field(default=30.0, gt=0)
    retention_deliveries_keep: int = Field(default=100, ge=0)
    retention_idempotency_hours: float = Field(default=24.0, gt=0)
    # Seconds between retention rounds (one replica runs each); 0 turns retention off.
    retention_interval_seconds: float = Field(default=600.0, ge=0)
    # Rows deleted per table per transaction.
    retention_batch: int = Field(default=1000, gt=0)
    # Open licences (Patent Law Art. 50-52; CNIPA's 2024 guidance). Terms outside the guidance
    # are flagged to the reviewer, not refused: a fixed fee (lump sum or entry fee) above
    # `open_licence_max_fixed_fee` yuan, a royalty above the rate for its basis.
    open_licence_max_fixed_fee: Decimal = Field(default=Decimal("20000000"), ge=0)
    open_licence_max_royalty_net_sales: Decimal = Field(default=Decimal("0.20"), ge=0, le=1)
    open_licence_max_royalty_profit: Decimal = Field(default=Decimal("0.40"), ge=0, le=1)
    # The shortest licence term a declaration may offer, in months.
    open_licence_min_term_months: int = Field(default=12, ge=1)
    # A licence taken is filed for recordal within this many months of the licensee's notice;
    # the parties are reminded (webhook `licence.recordal_due`) these many days before.
    open_licence_recordal_months: int = Field(default=3, ge=1)
    open_licence_reminder_days: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [30, 7]
    )
    # How often listing looks for recordal deadlines to remind the parties of.
    open_licence_reminder_interval_seconds: float = Field(default=3600.0, gt=0)
    # Listing, the incentives report (issue 23): the policy's rates as fractions, settings
    # because the province revises them. Licences and transfers earn this share of their value,
    # pledge loans this share of their interest, equity contributions this share of their
    # valuation. Six decimal places at most (the API's rate format).
    incentive_licence_rate: Decimal = Field(default=Decimal("0.01"), ge=0, le=1, decimal_places=6)
    incentive_pledge_interest_rate: Decimal = Field(
        default=Decimal("0.5"), ge=0, le=1, decimal_places=6
    )
    incentive_equity_rate: Decimal = Field(default=Decimal("0.1"), ge=0, le=1, decimal_places=6)
    # Listing, IP-backed financing (issue 22). A financing request pledges at most
    # `financing_max_assets` rights; each right's valuation report is at most
    # `financing_valuation_max_age_days` old when the request is made; a patent whose annual fee
    # fell due is in its grace period for `financing_annual_fee_grace_months` months (CNIPA
    # refuses to register a pledge meanwhile; after it the right has lapsed).
    financing_max_assets: int = Field(default=20, ge=1, le=200)
    financing_valuation_max_age_days: int = Field(default=365, ge=1)
    financing_annual_fee_grace_months: int = Field(default=6, ge=0)
    # The longest pledge loan term offered or asked, in months.
    financing_max_term_months: int = Field(default=120, ge=1)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("meili_replica_urls", mode="before")
    @classmethod
    def _split_nodes(cls, value: object) -> object:
        if isinstance(value, str):
            return [url.strip().rstrip("/") for url in value.split(",") if url.strip()]
        return value

    @field_validator("secret_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("secret_keys")
    @classmethod
    def _fernet_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for i, key in enumerate(keys):
            try:
                raw = base64.urlsafe_b64decode(key.get_secret_value().encode())
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError(
                    f"key {i + 1} is not a Fernet key (32 bytes, url-safe base64): "
                    "`ipx secrets new-key` makes one"
                )
        return keys

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(step) for step in value.split(",") if step.strip()]
        return value

    @field_validator("open_licence_reminder_days", mode="before")
    @classmethod
    def _split_days(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(day) for day in value.split(",") if day.strip()]
        return value

    @field_validator("webhook_user_agent")
    @classmethod
    def _printable_header(cls, value: str) -> str:
        # A header value: a control character (a newline) would fail every delivery.
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
            raise ValueError("the User-Agent must not contain control characters")
        return value

    @model_validator(mode="after")
    def _derive_urls(self) -> Self:
        """Fill in what was not set (or set empty) from what it follows: each service's URL
        from its port, the public URL from the gateway's, the webhook User-Agent from the
        public URL. What was set explicitly always wins. Derived values are written without
        marking them set, so `model_fields_set` still says what the environment gave."""
        derived = self.__dict__
        for service in SERVICE_NAMES:
            field = f"{service}_url"
            if field not in self.model_fields_set or not derived[field]:
                derived[field] = f"http://127.0.0.1:{self.port_of(service)}"
        if not self.public_url:
            derived["public_url"] = self.gateway_url
        if not self.webhook_user_agent:
            derived["webhook_user_agent"] = (
                f"ipx-webhooks/1.0 (+{self.public_url.rstrip('/')}/docs)"
            )
        return self

    def direct_database_url(self) -> str:
        """Where sessions that must reach PostgreSQL itself connect (leases, LISTEN)."""
        return self.database_direct_url or self.database_url

    def port_of(self, service: ServiceName) -> int:
        return {
            "listing": self.listing_port,
            "matching": self.matching_port,
            "gateway": self.gateway_port,
        }[service]


@lru_cache
def get_settings() -> Settings:
    return Settings()
