"""The SQLite store: schema and migrations, writes, reads and exports."""
