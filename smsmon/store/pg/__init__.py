"""The store on PostgreSQL (issue 15): the same tables, merge rule, counts and read side as the
SQLite store, for several listeners and many viewers on one database server.

    connection.py  psycopg pools; the read side's SQL (written for SQLite) run as it is, through
                   a small translation (`?` → `$1`, no INDEXED BY, rowid → seq); errors → smsmon's
    schema.py      tables, indexes, the versions table and the migrations
    writer.py      PgWriter: the merge in one transaction per batch, safe beside other writers
    reader.py      PgReader: the Reader on a pool; LISTEN/NOTIFY for new commits
    export.py      `smsmon export` lines
    copy.py        `smsmon migrate`: an SQLite database copied over, resumably
"""
