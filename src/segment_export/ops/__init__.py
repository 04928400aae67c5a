"""Operations: backup and restore, secret-key rotation, retention of run details."""
