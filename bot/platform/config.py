"""Settings from the environment or `.env` (DESIGN §4).

A missing or malformed setting stops start-up with one sentence that names it and says how to
fix it; `ConfigError` carries that sentence.
"""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]

_TOKEN_RE = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{10,}$")
_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

HINTS = {
    "TELEGRAM_BOT_TOKEN": "create a bot with @BotFather in Telegram (/newbot) and copy the token it gives you, e.g. 123456789:AAE...",
    "DATABASE_URL": "use e.g. sqlite+aiosqlite:///data/iop-bot.platform.db or postgresql+asyncpg://user:pass@host/db",
    "COUNSELOR_CHAT_ID": "add the bot to the counselors' supergroup and use its numeric id, e.g. -1001234567890",
    "ADMIN_USER_IDS": "give numeric Telegram user ids separated by commas, e.g. 11111111,22222222",
    "DEFAULT_TIMEZONE": "use an IANA time zone name such as America/New_York",
    "OFFICE_HOURS": "use the form 'Mon-Fri 09:00-17:00'",
    "ENCRYPTION_KEY": "generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'",
    "MEETING_FEEDS": "give entries separated by commas, each 'path-or-url|IANA zone'",
    "WEBHOOK_SECRET": "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
    "TELEGRAM_API_BASE_URL": "leave it at https://api.telegram.org/bot unless you run your own Bot API server",
}
# Telegram's rule for the webhook's secret token.
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")


class ConfigError(Exception):
    """A setting is missing or malformed; str(error) is one sentence for a person."""


class TokenRejected(Exception):
    """Telegram refuses the bot token (401): nothing can be received or sent until a person acts."""

    def __init__(self) -> None:
        super().__init__(
            "Telegram rejected TELEGRAM_BOT_TOKEN: it was revoked or replaced in @BotFather (or"
            " TELEGRAM_API_BASE_URL is not a Bot API server); put the bot's current token in .env"
            " and start the bot again."
        )


class OfficeHours:
    """Weekly office hours, e.g. 'Mon-Fri 09:00-17:00' (several blocks separated by ';')."""

    def __init__(self, spec: str) -> None:
        self.spec = spec.strip()
        self.blocks: list[tuple[set[int], time, time]] = []
        for part in self.spec.split(";"):
            part = part.strip()
            if not part:
                continue
            m = re.fullmatch(
                r"([A-Za-z]{3})(?:\s*-\s*([A-Za-z]{3}))?\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})",
                part,
            )
            if not m:
                raise ValueError(f"cannot read office hours {part!r}")
            d1, d2 = m.group(1).lower(), (m.group(2) or m.group(1)).lower()
            if d1 not in _DAYS or d2 not in _DAYS:
                raise ValueError(f"unknown weekday in {part!r}")
            i1, i2 = _DAYS.index(d1), _DAYS.index(d2)
            days = set(range(i1, i2 + 1)) if i1 <= i2 else set(range(i1, 7)) | set(range(0, i2 + 1))
            start = time(int(m.group(3)), int(m.group(4)))
            end = time(int(m.group(5)), int(m.group(6)))
            if end <= start:
                raise ValueError(f"office hours end before they start in {part!r}")
            self.blocks.append((days, start, end))
        if not self.blocks:
            raise ValueError("no office hours given")

    def __str__(self) -> str:
        return self.spec


class FeedSpec:
    def __init__(self, source: str, timezone: str) -> None:
        self.source = source
        self.timezone = timezone


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    database_url: str = "sqlite+aiosqlite:///data/iop-bot.platform.db"
    counselor_chat_id: int | None = None
    admin_user_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    default_timezone: str = "America/New_York"
    default_language: str = "en"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    # How often webhook mode asks Telegram whether the webhook still works (seconds).
    webhook_check_seconds: float = Field(default=300, gt=0)
    encryption_key: SecretStr | None = None
    meeting_feeds: Annotated[list[FeedSpec], NoDecode] = Field(default_factory=list)
    office_hours: Annotated[OfficeHours, NoDecode] = Field(
        default_factory=lambda: OfficeHours("Mon-Fri 09:00-17:00")
    )
    send_rate: float = Field(default=25, gt=0, le=30)
    content_dir: Path = REPO_ROOT / "content"
    log_level: str = "INFO"
    # Escalation delays (minutes), DESIGN §2.6.
    crisis_repost_minutes: int = Field(default=5, ge=1)
    crisis_dm_minutes: int = Field(default=10, ge=1)
    high_repost_minutes: int = Field(default=30, ge=1)
    sweep_interval_seconds: float = Field(default=5, gt=0)
    # Per-person limits (bot/platform/flood.py): a burst, then one every so many seconds. Enrolled patients
    # and staff; everyone else (strangers, the strictest); buttons (more generous). Every text is
    # risk-screened first; a patient's text with a risk signal is handled whatever the limit.
    flood_member_burst: int = Field(default=20, ge=1)
    flood_member_every_seconds: float = Field(default=1.0, gt=0)
    flood_stranger_burst: int = Field(default=5, ge=1)
    flood_stranger_every_seconds: float = Field(default=10.0, gt=0)
    flood_button_burst: int = Field(default=30, ge=1)
    flood_button_every_seconds: float = Field(default=0.5, gt=0)
    # How long finished rows are kept before the daily prune removes them (days): handled
    # updates, sent messages, and finished or cancelled scheduled items. Rows still waiting,
    # being sent, or set aside as failed are never pruned.
    inbox_retention_days: int = Field(default=7, ge=1)
    outbox_retention_days: int = Field(default=30, ge=1)
    schedule_retention_days: int = Field(default=30, ge=1)

    model_config["arbitrary_types_allowed"] = True

    @field_validator("telegram_bot_token", "webhook_secret", "encryption_key", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not _SECRET_RE.fullmatch(v.get_secret_value()):
            raise ValueError("use 1 to 256 characters among A-Z, a-z, 0-9, _ and -")
        return v

    @field_validator("telegram_api_base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        parts = urlsplit(v.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("it must be an http:// or https:// URL")
        return v.strip()

    @field_validator("counselor_chat_id", "webhook_url", mode="before")
    @classmethod
    def _empty_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("admin_user_ids", mode="before")
    @classmethod
    def _ids(cls, v: object) -> object:
        if isinstance(v, str):
            return [int(x) for x in re.split(r"[,\s]+", v.strip()) if x]
        return v

    @field_validator("meeting_feeds", mode="before")
    @classmethod
    def _feeds(cls, v: object) -> object:
        if isinstance(v, str):
            out = []
            for item in (x.strip() for x in v.split(",")):
                if not item:
                    continue
                source, _, zone = item.partition("|")
                zone = zone.strip()
                if zone:
                    _check_zone(zone)
                out.append(FeedSpec(source.strip(), zone))
            return out
        return v

    @field_validator("office_hours", mode="before")
    @classmethod
    def _hours(cls, v: object) -> object:
        return OfficeHours(v) if isinstance(v, str) else v

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        _check_zone(v)
        return v

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        if not (v.startswith("sqlite+aiosqlite://") or v.startswith("postgresql+asyncpg://")):
            raise ValueError("only sqlite+aiosqlite:// and postgresql+asyncpg:// are supported")
        return v

    @field_validator("encryption_key")
    @classmethod
    def _key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            from cryptography.fernet import Fernet

            Fernet(v.get_secret_value().encode())
        return v

    @property
    def token(self) -> str:
        return self.telegram_bot_token.get_secret_value() if self.telegram_bot_token else ""

    def require_token(self) -> str:
        token = self.token
        if not token:
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN is not set: " + HINTS["TELEGRAM_BOT_TOKEN"] + ", and put it in .env."
            )
        if not _TOKEN_RE.match(token):
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN does not look like a bot token: " + HINTS["TELEGRAM_BOT_TOKEN"] + "."
            )
        return token

    def require_webhook_secret(self) -> str | None:
        """Webhook mode only with a secret: without one, anyone who finds the URL could post
        updates as any user (an admin's /grant included). The secret is given, not generated,
        so that every process of an installation checks the same one."""
        if not self.webhook_url:
            return None
        if self.webhook_secret is None:
            raise ConfigError(
                "WEBHOOK_SECRET is not set, and webhook mode (WEBHOOK_URL) refuses to run without it: "
                + HINTS["WEBHOOK_SECRET"]
                + ", and put it in .env."
            )
        return self.webhook_secret.get_secret_value()

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.admin_user_ids


def _check_zone(zone: str) -> None:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {zone!r}") from exc


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning any validation problem into one clear ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).upper() if err.get("loc") else "a setting"
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        hint = HINTS.get(name)
        sentence = f"{name} is not valid ({msg})"
        if hint:
            sentence += f": {hint}"
        raise ConfigError(sentence + ".") from None
