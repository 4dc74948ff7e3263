"""Configuration: every setting is a ``KARES_*`` environment variable.

With nothing set, Kares runs embedded: SQLite under ``./var``, in-process
events, console SMS sender, development keys generated on first run.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A list read from one environment variable: "a, b" or a JSON array ("NoDecode" lets
# the validator below split it; pydantic-settings would take the text for JSON and fail)
CsvList = Annotated[list[str], NoDecode]


class ConfigError(RuntimeError):
    """Raised at start-up when the configuration cannot be used."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KARES_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    var_dir: Path = Path("var")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    # the server name in Matrix user ids (@<account id>:<server_name>); set it to
    # the host name clients reach the service at
    server_name: str = Field(default="localhost", min_length=1, max_length=255)

    # Keys. data_keys: "kid:base64key,kid2:base64key" (first one encrypts);
    # index_key: base64 key for keyed hashes (blind indexes, code hashes).
    data_keys: str = ""
    index_key: str = ""

    # The privacy catalog (the policy as data); default: the one in the package
    privacy_catalog: Path | None = None

    # Phone numbers
    default_region: str = "CN"

    # SMS one-time codes
    otp_length: int = 6
    otp_ttl_seconds: int = 300
    otp_max_attempts: int = 5
    otp_resend_cooldown_seconds: int = 60
    otp_per_number_per_hour: int = 5
    otp_per_ip_per_hour: int = 20
    sms_sender: Literal["console", "file", "http"] = "console"
    sms_file: Path | None = None
    sms_http_url: str = ""
    sms_http_token: str = ""
    sms_http_timeout_seconds: float = 5.0

    # Passwords
    password_min_length: int = 8
    password_max_failures: int = 5
    password_lockout_seconds: int = 900
    # wrong passwords allowed per number and per client address in an hour, on
    # top of the lockout (docs/ACCOUNTS.md)
    password_per_number_per_hour: int = 10
    password_per_ip_per_hour: int = 30
    argon2_time_cost: int = 3
    argon2_memory_cost_kib: int = 65536
    argon2_parallelism: int = 2

    # Sessions
    session_cookie_name: str = "kares_session"
    session_cookie_secure: bool = True
    session_ttl_days: int = 90
    session_touch_seconds: int = 60

    # Account deletion (policy 5.4): days between the request and the deletion,
    # during which signing in cancels it
    deletion_cooling_off_days: int = Field(default=15, ge=0)
    trusted_proxies: CsvList = Field(default_factory=list)
    ip_places_csv: Path | None = None

    # Uploaded images
    image_max_bytes: int = 5 * 1024 * 1024
    # an Apple Health export uploaded to POST /api/v1/health/imports (the zip)
    health_import_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    image_max_pixels: int = 40_000_000
    avatar_max_side: int = 1024

    # WeChat OAuth2 (authorization-code exchange)
    wechat_app_id: str = ""
    wechat_app_secret: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_avatar_hosts: CsvList = Field(
        default_factory=lambda: ["thirdwx.qlogo.cn", "wx.qlogo.cn"]
    )
    wechat_avatar_scheme: Literal["https", "http"] = "https"

    # Sign in with Apple (ID-token verification)
    apple_client_ids: CsvList = Field(default_factory=list)
    apple_issuer: str = "https://appleid.apple.com"
    apple_jwks_url: str = "https://appleid.apple.com/auth/keys"
    apple_jwks_cache_seconds: int = 3600
    oauth_nonce_ttl_seconds: int = 600
    oauth_nonce_per_ip_per_hour: int = 60
    oauth_http_timeout_seconds: float = 5.0

    # Background jobs (kares.jobs). The in-process worker runs inside the app
    # unless turned off (then run `kares worker`); None: on, except with env=test,
    # where tests run due jobs themselves (jobs.run_due).
    jobs_worker: bool | None = None
    jobs_poll_seconds: float = 2.0
    jobs_batch_size: int = Field(default=20, ge=1, le=500)
    jobs_concurrency: int = Field(default=8, ge=1, le=100)
    jobs_lease_seconds: int = Field(default=300, ge=5)
    jobs_max_attempts: int = Field(default=12, ge=1)
    jobs_backoff_base_seconds: float = Field(default=10.0, gt=0)
    jobs_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    # retention (kares.retention): how often the job runs, rows per batch (one short
    # transaction each), and how long one run may go on before it hands over to the
    # next (shorter than jobs_lease_seconds, so no other worker takes it over)
    retention_interval_seconds: int = Field(default=86400, ge=60)
    retention_batch_size: int = Field(default=1000, ge=1, le=20000)
    retention_run_seconds: float = Field(default=120.0, gt=0)
    # a pause after each batch: a writer of another process (which asks for the lock
    # every few ms) gets its turn instead of waiting for the whole run
    retention_pause_seconds: float = Field(default=0.01, ge=0, le=5)

    # Push notifications (notify/push.py). A provider without its credentials is
    # unavailable in production; elsewhere its pushes go to the console sink.
    push_sink: Literal["console", "file"] = "console"
    push_file: Path | None = None
    push_ttl_seconds: int = Field(default=86400, ge=60)
    push_http_timeout_seconds: float = 10.0
    # APNs, token-based auth: the .p8 key (a file or its PEM text), key id, team id
    apns_key_file: Path | None = None
    apns_key: str = ""
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_topic: str = ""  # the app's bundle id
    apns_base_url: str = "https://api.push.apple.com"  # sandbox: api.sandbox.push.apple.com
    # FCM HTTP v1: a service-account JSON (a file or the JSON text)
    fcm_service_account_file: Path | None = None
    fcm_service_account: str = ""
    fcm_base_url: str = "https://fcm.googleapis.com"
    fcm_token_uri: str = ""  # default: the service account's token_uri
    # Web Push: the VAPID private key (PEM, or the raw key in base64url); a
    # development key is generated under var_dir when unset outside production
    webpush_vapid_key: str = ""
    webpush_vapid_subject: str = "mailto:support@auroraKare.com"
    # Subscription endpoints may point only at these push services (no SSRF)
    webpush_hosts: CsvList = Field(
        default_factory=lambda: [
            "fcm.googleapis.com",
            "updates.push.services.mozilla.com",
            "*.push.apple.com",
            "*.notify.windows.com",
        ]
    )
    webpush_allow_http: bool = False  # tests only: plain-http endpoints

    # Location (docs/LOCATION.md). A fix whose accuracy is worse than this is
    # kept but flagged, never used as good; one dated further ahead than the
    # tolerance is refused; speeds above the ceiling (about Mach 1) are flagged.
    location_max_accuracy_m: float = Field(default=2000.0, gt=0)
    location_future_tolerance_seconds: int = Field(default=300, ge=0)
    location_max_speed_mps: float = Field(default=340.0, gt=0)
    location_batch_max: int = Field(default=1000, ge=1, le=10000)
    # Local geolocation tables for fixes that carry only cell towers or Wi-Fi
    # access points: an OpenCellID-format CSV and a `mac,lat,lon,range_m` CSV
    geo_cells_csv: Path | None = None
    geo_wifi_csv: Path | None = None
    # The kids'-watch TCP protocol listener (`kares serve --watch-port`); 0: off
    watch_host: str = "127.0.0.1"
    watch_port: int = Field(default=0, ge=0, le=65535)
    # a connection silent this long is closed (watches keep alive every few minutes)
    watch_idle_seconds: int = Field(default=120, ge=10)
    # open connections at once: from one peer address (carrier NAT puts many
    # watches behind one), and for one watch id (a reconnect while the old one lingers)
    watch_max_per_peer: int = Field(default=32, ge=1)
    watch_max_per_id: int = Field(default=2, ge=1)
    # only these networks (CIDRs) may connect; empty: any (docs/WATCHES_AND_SOS.md)
    watch_allow: list[str] = Field(default_factory=list)
    # an alarm dated longer ago than this is recorded, never raised as a live SOS
    watch_alarm_max_age_seconds: int = Field(default=600, ge=60)
    # POST /api/v1/watches/hello: per peer address and hour, and how long an
    # introduced watch waits for its pairing before it is forgotten
    watch_hello_per_ip_per_hour: int = Field(default=20, ge=1)
    watch_hello_ttl_seconds: int = Field(default=86400, ge=60)
    # Real time (docs/MESSAGING.md). redis_url: several processes share hub notices
    # and presence through Redis (empty: one process, in memory); a socket that
    # resumes more than ws_resume_limit events behind gets a "resync"; frames are
    # at most ws_frame_max_bytes; each socket may send ws_frames_per_second
    # (bursts of ws_frames_burst); typing stops by itself after ws_typing_seconds;
    # with Redis, every stream catches up every live_catchup_seconds
    redis_url: str = ""
    ws_resume_limit: int = Field(default=1000, ge=1, le=100_000)
    ws_frame_max_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    ws_frames_per_second: float = Field(default=10.0, gt=0)
    ws_frames_burst: int = Field(default=30, ge=1)
    ws_typing_seconds: float = Field(default=6.0, gt=0, le=60)
    live_catchup_seconds: float = Field(default=60.0, ge=1)
    # Arrive/leave at places: a crossing counts once the fixes agree for this long
    place_confirm_seconds: int = Field(default=60, ge=0)
    # Messaging (docs/MESSAGING.md): how long a sender may recall a message, and
    # the caps on a voice note
    message_recall_seconds: int = Field(default=120, ge=0)
    voice_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    voice_max_seconds: int = Field(default=120, ge=1)
    # an attachment uploaded and never sent is deleted this many hours after its upload
    attachment_unsent_hours: int = Field(default=24, ge=1, le=24 * 365)
    # Anonymised statistics (docs/STATS.md): groups of fewer than k distinct people
    # are suppressed; each figure of a release spends stats_epsilon; the releases of
    # any stats_budget_period_days together spend at most stats_budget_epsilon
    stats_k: int = Field(default=10, ge=2)
    stats_epsilon: float = Field(default=0.4, gt=0, le=10)
    stats_budget_epsilon: float = Field(default=10.0, gt=0)
    stats_budget_period_days: int = Field(default=30, ge=1)

    # Export archives (policy 5.1, docs/RIGHTS.md): written under export_dir
    # (default var_dir/exports, never served as a path); the download link
    # expires after export_link_hours and works once; the archive is deleted
    # export_keep_hours after it was ready (and right after its download)
    export_dir: Path | None = None
    export_link_hours: int = Field(default=72, ge=1)
    export_keep_hours: int = Field(default=168, ge=1)

    # Requests that need a person (docs/RIGHTS.md): free, but the same request
    # (same kind, person and subject) more than this many times within the period
    # is refused with the reason (policy 5.8)
    rights_repeat_limit: int = Field(default=3, ge=1)
    rights_repeat_period_days: int = Field(default=30, ge=1)

    # Voice calls: how long a call rings before it is missed; TURN by the REST
    # scheme coturn implements (static-auth-secret): no URIs or no secret, no TURN
    calls_ring_seconds: int = Field(default=45, ge=5, le=600)
    turn_uris: CsvList = Field(default_factory=list)
    turn_secret: str = ""
    turn_ttl_seconds: int = Field(default=86400, ge=60)

    # Encrypted backups (kares backup, docs/RIGHTS.md "Backups"): age (X25519) keys,
    # never the column-encryption keys. Creating needs only the public recipients
    # ("age1...", comma-separated); restoring needs the identity file (the secret
    # key, kept away from the server and its var directory)
    backup_recipients: CsvList = Field(default_factory=list)
    backup_identity_file: Path | None = None

    @field_validator(
        "trusted_proxies",
        "wechat_avatar_hosts",
        "apple_client_ids",
        "webpush_hosts",
        "watch_allow",
        "turn_uris",
        "backup_recipients",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                return json.loads(v)
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("watch_allow")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a network (CIDR)") from None
        return v

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def jobs_worker_enabled(self) -> bool:
        return self.jobs_worker if self.jobs_worker is not None else self.env != "test"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.var_dir / 'kares.db').as_posix()}"

    @property
    def is_embedded_db(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


def _generate_dev_keys(path: Path) -> dict[str, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = {
        "data_keys": "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "index_key": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(keys, fh)
    os.replace(tmp, path)
    return keys


def resolve_keys(settings: Settings) -> tuple[str, str]:
    """Return (data_keys, index_key), generating development keys on first run.

    Production never falls back to generated keys: missing keys are an error.
    """
    if settings.data_keys and settings.index_key:
        return settings.data_keys, settings.index_key
    if settings.is_production:
        raise ConfigError(
            "KARES_DATA_KEYS and KARES_INDEX_KEY must be set when KARES_ENV=production"
        )
    path = settings.var_dir / "dev-keys.json"
    if path.exists():
        keys = json.loads(path.read_text())
    else:
        keys = _generate_dev_keys(path)
    return (settings.data_keys or keys["data_keys"], settings.index_key or keys["index_key"])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
