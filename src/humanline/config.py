"""Settings, from environment variables prefixed `HUMANLINE_` (or a `.env` file).

Every setting has a safe default for a local start on the embedded store; validators refuse
values that would break the service's guarantees (a polling fallback slower than a second, a
heartbeat timeout shorter than the interval, a grace period of zero).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from humanline.domain.model import Urgency
from humanline.domain.rules import DispatchPolicy


def parse_listen(listen: str) -> tuple[str, int]:
    """host:port (IPv6 in brackets) as (host, port); ValueError if it is not one."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port, got {listen!r}")
    return host.strip("[]"), int(port)


class Settings(BaseSettings):
    """humanline's configuration. Each field is the lower-case form of its variable:
    `listen` is `HUMANLINE_LISTEN`."""

    model_config = SettingsConfigDict(env_prefix="HUMANLINE_", env_file=".env", extra="ignore")

    listen: str = Field("127.0.0.1:50051", description="host:port the gRPC server binds")
    database_url: str = Field(
        "sqlite+aiosqlite:///humanline.db",
        description="sqlite+aiosqlite:///FILE (embedded) or postgresql+asyncpg://...",
    )
    offer_timeout_seconds: float = Field(15.0, gt=0, description="time an agent has to accept")
    grace_period_seconds: float = Field(
        30.0, gt=0, description="how long a dropped session keeps its work"
    )
    heartbeat_interval_seconds: float = Field(
        10.0, gt=0, description="how often agent apps must heartbeat"
    )
    heartbeat_misses: int = Field(
        3, ge=2, description="intervals of silence after which a stream counts as dead"
    )
    max_consecutive_misses: int = Field(
        2, ge=1, description="missed offers in a row that set an agent away"
    )
    target_critical_seconds: float = Field(30.0, gt=0, description="time-to-agent target")
    target_high_seconds: float = Field(60.0, gt=0, description="time-to-agent target")
    target_normal_seconds: float = Field(120.0, gt=0, description="time-to-agent target")
    target_low_seconds: float = Field(300.0, gt=0, description="time-to-agent target")
    default_handle_time_seconds: float = Field(
        300.0, gt=0, description="handle time assumed for wait estimates before any completion"
    )
    sweep_interval_seconds: float = Field(
        1.0, gt=0, le=1.0, description="fallback sweep for expiries and lost wake-ups (<= 1 s)"
    )
    hello_timeout_seconds: float = Field(
        10.0, gt=0, description="time a new agent stream has to send hello or resume"
    )
    watch_interval_seconds: float = Field(
        0.5, gt=0, description="how often WatchHandoff checks for queue movement"
    )
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, description="time in-flight calls get to finish on SIGTERM"
    )
    max_connection_age_seconds: float = Field(
        1800.0,
        ge=0,
        description="a client connection is asked to reconnect (GOAWAY) after this long, "
        "give or take 10%, so that connections rebalance over new replicas; 0: never",
    )
    max_connection_age_grace_seconds: float = Field(
        30.0,
        ge=0,
        description="time calls and streams still open on an aged connection get before it "
        "is closed (an agent stream cut then resumes, keeping its work)",
    )
    replica_heartbeat_seconds: float = Field(
        2.0, gt=0, description="how often a replica marks itself alive in the database"
    )
    replica_ttl_seconds: float = Field(
        6.0, gt=0, description="silence after which other replicas declare a replica dead"
    )
    quality_window_seconds: float = Field(
        86400.0,
        gt=0,
        description="the sliding window the quality monitor judges interaction types over "
        "(and the window before it, their baseline)",
    )
    quality_check_seconds: float = Field(
        30.0, gt=0, description="the quality monitor looks at least this often"
    )
    retention_days: float = Field(
        90.0,
        gt=0,
        description="finished handoffs (with their offers) and ended sessions older than this "
        "are deleted; ExportOutcomes refuses windows that reach further back",
    )
    rollup_retention_days: float = Field(
        400.0,
        gt=0,
        description="quality reports' daily numbers are kept this long (finer ones less); "
        "GetQualityReport refuses windows that reach further back",
    )
    notify: bool = Field(
        True,
        description="PostgreSQL LISTEN/NOTIFY hints between replicas; false = poll only "
        "(for PgBouncer transaction pooling)",
    )
    db_pool_size: int = Field(10, ge=1, description="PostgreSQL connections per replica")
    reflection: bool = Field(True, description="serve gRPC server reflection")
    routing_policies: str | None = Field(
        None,
        description="TOML file of routing policies per interaction type, stored at every start "
        "(see policyfile.py); unset: the built-in policies and what ops set",
    )
    auth_keys: str = Field(
        "humanline.keys.json",
        description="the keyring tokens are signed and verified with (`humanline token`); "
        "created on first start with the embedded store",
    )
    print_tokens: bool = Field(
        False, description="print tokens for an agent, a bot and ops at start (local trials)"
    )
    insecure_no_auth: bool = Field(
        False,
        description="DEVELOPMENT ONLY: let every caller in without a token (says so loudly)",
    )
    tls_cert_file: str | None = Field(
        None, description="PEM certificate (chain) of the listener: TLS on `listen`"
    )
    tls_key_file: str | None = Field(None, description="PEM private key of that certificate")
    tls_client_ca_file: str | None = Field(
        None,
        description="PEM CA of client certificates: mutual TLS on `mtls_listen`, which bots "
        "and ops must then call through with a certificate naming them",
    )
    mtls_listen: str | None = Field(
        None, description="host:port of the mutual-TLS listener (with tls_client_ca_file)"
    )
    rate_limit_per_second: float = Field(
        100.0, ge=0, description="calls a second per caller (token subject); 0 = no limit"
    )
    rate_limit_burst: int = Field(200, ge=1, description="calls a caller may make at once")
    max_streams_per_peer: int = Field(
        1000,
        ge=0,
        description="open Connect and WatchHandoff streams per client address; 0 = no limit",
    )
    max_message_bytes: int = Field(
        64 * 1024, ge=4096, description="largest request message accepted, in bytes"
    )
    metrics_listen: str | None = Field(
        None,
        description="host:port of the Prometheus endpoint (/metrics, plain HTTP, no auth); "
        "unset, empty or 0: off",
    )
    metrics_refresh_seconds: float = Field(
        5.0, gt=0, description="how often the pool gauges (queue depth, agents) are read"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info")
    log_format: Literal["json", "console"] = Field("json")

    @model_validator(mode="after")
    def _targets_ordered(self) -> Settings:
        targets = [
            self.target_critical_seconds,
            self.target_high_seconds,
            self.target_normal_seconds,
            self.target_low_seconds,
        ]
        if targets != sorted(targets):
            raise ValueError("targets must not shrink as urgency drops (critical <= ... <= low)")
        if self.replica_ttl_seconds < 2 * self.replica_heartbeat_seconds:
            raise ValueError("replica_ttl_seconds must be at least twice the heartbeat interval")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("mutual TLS (tls_client_ca_file) needs tls_cert_file and tls_key_file")
        if (self.tls_client_ca_file is None) != (self.mtls_listen is None):
            raise ValueError("tls_client_ca_file and mtls_listen go together")
        if self.metrics_listen in ("", "0"):
            self.metrics_listen = None
        if self.metrics_listen is not None:
            parse_listen(self.metrics_listen)  # ValueError: not host:port
        return self

    def policy(self) -> DispatchPolicy:
        """The dispatch numbers for the service."""
        return DispatchPolicy(
            targets={
                Urgency.CRITICAL: timedelta(seconds=self.target_critical_seconds),
                Urgency.HIGH: timedelta(seconds=self.target_high_seconds),
                Urgency.NORMAL: timedelta(seconds=self.target_normal_seconds),
                Urgency.LOW: timedelta(seconds=self.target_low_seconds),
            },
            offer_timeout=timedelta(seconds=self.offer_timeout_seconds),
            max_consecutive_misses=self.max_consecutive_misses,
            grace_period=timedelta(seconds=self.grace_period_seconds),
            heartbeat_interval=timedelta(seconds=self.heartbeat_interval_seconds),
            heartbeat_misses=self.heartbeat_misses,
            default_handle_time=timedelta(seconds=self.default_handle_time_seconds),
        )
