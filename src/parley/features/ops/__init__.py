"""Operations: maintenance mode, backups and verified restores, deploys, alerts."""
