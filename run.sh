#!/usr/bin/env bash
# Runs the bot: sets up .venv on first use, reads .env, applies migrations, then polls Telegram
# (or serves the webhook when WEBHOOK_URL is set).
set -euo pipefail
cd "$(dirname "$0")"
scripts/venv.sh
exec .venv/bin/iop-bot run "$@"
