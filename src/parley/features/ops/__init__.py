"""Operations: what a deployment is (`/version`) and whether it is fit to run (`preflight`);
maintenance mode, backups and verified restores, migrations, deploys with rollback, alerts."""
