# Two commands for a newcomer: `make demo` and `make test`. Both set up what is missing first.
.PHONY: setup setup-tests demo test ui lint bench clean-state

setup:
	@bash scripts/setup.sh

setup-tests:
	@ARCHIVE_SETUP_TESTS=1 bash scripts/setup.sh

demo: setup
	.venv/bin/archive demo

test: setup-tests
	.venv/bin/pytest -q

ui: setup
	.venv/bin/archive ui

lint: setup
	.venv/bin/ruff check .

# Removes the demo's local instance (Postgres cluster, object store, Dagster logs).
clean-state: setup
	.venv/bin/archive services stop || true
	find dagster_home -mindepth 1 -maxdepth 1 ! -name dagster.yaml ! -name README.md -exec rm -rf {} +
