#!/usr/bin/env bash
# Runs the bot: sets up .venv on first use, reads .env, applies migrations, then polls Telegram
# (or serves the webhook when WEBHOOK_URL is set).
set -euo pipefail
cd "$(dirname "$0")"
scripts/venv.sh
# .env holds the token and the encryption key, data/ the patients' records: whatever is created
# from here on (.env, data/, the database) is readable by this user only (600 files, 700 folders).
umask 077
if [ ! -f .env ]; then
  cp .env.example .env
  echo "Created .env from .env.example; put your TELEGRAM_BOT_TOKEN in it." >&2
fi
# Free text (notes, plan entries, relayed messages) is encrypted at rest: make a key on first use.
if [ -z "${ENCRYPTION_KEY:-}" ] && ! grep -qE '^ENCRYPTION_KEY=.+' .env; then
  chmod 600 .env  # it is about to hold the key
  key=$(.venv/bin/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')
  if grep -qE '^ENCRYPTION_KEY=' .env; then
    sed -i "s|^ENCRYPTION_KEY=.*|ENCRYPTION_KEY=$key|" .env
  else
    printf '\nENCRYPTION_KEY=%s\n' "$key" >> .env
  fi
  echo "Generated ENCRYPTION_KEY in .env. Keep .env safe and backed up: without the key the stored notes cannot be read." >&2
fi
if [ -n "$(find .env -perm /077)" ]; then
  echo "Note: .env can be read by other users of this machine; it holds the bot's secrets (chmod 600 .env)." >&2
fi
exec .venv/bin/iop-bot run "$@"
