"""The SQLite store: schema and migrations, the one writer, the read side."""
