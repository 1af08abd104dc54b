#!/bin/sh
# One PostgreSQL instance, two databases: Prefect's and Label Studio's, each with its own owner.
# The postgres image runs this once, when its data volume is empty (docker-entrypoint-initdb.d).
set -eu

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v prefect_password="$PG_PREFECT_PASSWORD" -v label_studio_password="$PG_LABEL_STUDIO_PASSWORD" <<'SQL'
CREATE USER prefect WITH PASSWORD :'prefect_password';
CREATE DATABASE prefect OWNER prefect;
CREATE USER labelstudio WITH PASSWORD :'label_studio_password';
CREATE DATABASE labelstudio OWNER labelstudio;
SQL
