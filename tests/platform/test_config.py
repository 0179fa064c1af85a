import pytest

from bot.platform.config import ConfigError, OfficeHours, load_settings


def settings(**kw):
    return load_settings(_env_file=None, **kw)


def test_defaults_follow_the_design():
    s = settings()
    assert s.database_url == "sqlite+aiosqlite:///data/iop-bot.platform.db"
    assert s.default_timezone == "America/New_York"
    assert s.default_language == "en"
    assert s.send_rate == 25
    assert str(s.office_hours) == "Mon-Fri 09:00-17:00"


def test_missing_token_names_the_setting_and_botfather():
    with pytest.raises(ConfigError) as e:
        settings().require_token()
    assert "TELEGRAM_BOT_TOKEN" in str(e.value) and "@BotFather" in str(e.value)


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("DATABASE_URL", "mysql://nope"),
        ("COUNSELOR_CHAT_ID", "the-group"),
        ("ADMIN_USER_IDS", "alice,bob"),
        ("DEFAULT_TIMEZONE", "Mars/Olympus"),
        ("OFFICE_HOURS", "weekdays nine to five"),
        ("ENCRYPTION_KEY", "short"),
        ("SEND_RATE", "500"),
        ("WEBHOOK_PORT", "99999"),
    ],
)
def test_malformed_settings_stop_with_one_sentence_naming_them(monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as e:
        load_settings(_env_file=None)
    msg = str(e.value)
    assert msg.startswith(env) and msg.endswith(".") and "\n" not in msg


def test_lists_and_office_hours_parse(monkeypatch):
    monkeypatch.setenv("ADMIN_USER_IDS", "11, 22 ,33")
    monkeypatch.setenv("OFFICE_HOURS", "Mon-Thu 08:30-18:00; Fri 09:00-13:00")
    monkeypatch.setenv("MEETING_FEEDS", "feeds/a.json|America/Chicago, https://example.org/feed|Europe/London")
    s = load_settings(_env_file=None)
    assert s.admin_user_ids == [11, 22, 33]
    assert len(s.office_hours.blocks) == 2
    assert [f.timezone for f in s.meeting_feeds] == ["America/Chicago", "Europe/London"]


def test_office_hours_wrap_the_week():
    oh = OfficeHours("Sat-Mon 10:00-12:00")
    assert oh.blocks[0][0] == {5, 6, 0}
