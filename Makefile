# Developer shortcuts; the README's two commands are the supported entry points.
PY := uv run --frozen python

.PHONY: check install test lint migration schema

# Installs the locked dependencies, then runs every check and test.
check: install lint test

install:
	uv sync --frozen

test:
	uv run --frozen pytest

lint:
	uv run --frozen ruff format --check .
	uv run --frozen ruff check .
	uv run --frozen mypy

# Until the first release the schema is one migration, regenerated from the models.
migration:
	rm -f server/migrations/versions/0001_initial_schema.py /tmp/codeqr-migration.db
	$(PY) -c "from alembic import command; from alembic.config import Config; c = Config(); c.set_main_option('script_location', 'server/migrations'); c.set_main_option('sqlalchemy.url', 'sqlite:////tmp/codeqr-migration.db'); command.revision(c, message='initial schema', autogenerate=True, rev_id='0001')"
	sed -i 's/[[:space:]]*$$//' server/migrations/versions/0001_initial_schema.py
	uv run --frozen ruff check -q --fix server/migrations/versions
	uv run --frozen ruff format -q server/migrations/versions

# Same output as `strawberry export-schema` (whose [cli] extra pins websockets<17).
schema:
	$(PY) -c "from pathlib import Path; from server.api.schema import schema; Path('graphql/schema.graphql').write_text(str(schema) + '\n')"
