"""One typed settings object, read once from the environment (prefix ``CODEQR_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service. Secrets default to empty: an empty secret turns its feature off."""

    model_config = SettingsConfigDict(
        env_prefix="CODEQR_", env_file=".env", extra="ignore"
    )

    database_url: str = "sqlite:///./codeqr.db"
    stripe_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list
    )
    stripe_app_secret: SecretStr = SecretStr("")
    stripe_api_key: SecretStr = SecretStr("")
    stripe_api_base: str = "https://api.stripe.com"
    broker_url: str = "memory://"
    secret_key: SecretStr = SecretStr("")
    public_url: str = "http://localhost:8000"

    # Not part of the public contract; tuned by operators and tests. "test" (what the
    # test suite sets) is development without GraphiQL; "production" needs SECRET_KEY,
    # sets Secure cookies and turns off introspection and suggestions. Anything else is
    # refused at start-up rather than half applied.
    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    webhook_max_body_bytes: int = 512 * 1024
    webhook_tolerance_seconds: int = 300
    worker_enabled: bool = True
    worker_poll_seconds: float = 0.2
    worker_batch_size: int = 50
    worker_max_attempts: int = 8
    worker_backoff_base_seconds: float = 1.0
    # Batches handled side by side per process on PostgreSQL (SQLite serialises writes:
    # always 1). The claim never gives two of them events of one customer at once.
    # ``codeqr serve --workers N`` (N > 1) makes it 1 unless it is set explicitly.
    worker_concurrency: int = 2
    click_buffer_size: int = 10_000
    click_flush_interval_seconds: float = 0.05
    click_flush_batch_size: int = 500
    access_token_ttl_seconds: int = 3600
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    authorization_code_ttl_seconds: int = 60
    # argon2id cost of password hashes (argon2-cffi's defaults, RFC 9106 low-memory);
    # tests lower it, production keeps it.
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65536
    # ECB rate table installed by `codeqr fx` (empty: server/data/eurofxref-hist.csv).
    fx_rates_file: str = ""

    @field_validator("environment", mode="before")
    @classmethod
    def _lower_environment(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("stripe_webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def is_development(self) -> bool:
        return self.environment in {"development", "test"}

    @property
    def short_domain(self) -> str:
        """The host that short links are served on, taken from ``PUBLIC_URL``."""
        from urllib.parse import urlsplit

        return (urlsplit(self.public_url).hostname or "localhost").lower()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def settings_problem(error: ValidationError) -> str:
    """A pydantic error about the environment as one line naming the variables."""
    parts = []
    for item in error.errors():
        name = "CODEQR_" + "_".join(str(part) for part in item["loc"]).upper()
        parts.append(f"{name}: {item['msg']}")
    return "; ".join(parts)


def reset_settings() -> None:
    """Forget the cached settings, so the next read sees the current environment."""
    get_settings.cache_clear()
