"""The store port on SQLAlchemy async: SQLite (aiosqlite) and PostgreSQL (asyncpg)."""
