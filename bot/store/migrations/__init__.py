"""Alembic migrations of the store, shipped in the package so installs can upgrade."""
