"""Searches logged in access_log before the audit trail existed become its first rows, in the
order they happened and chained like every other (access/audit.py); access_log goes."""

from access.audit import Actor, record


def migrate(cur) -> None:
    cur.execute("SELECT at, actor, action, query, file_numbers FROM access_log ORDER BY access_id")
    for row in cur.fetchall():
        # the header named the actor then: kept as it was, marked so, never taken for a login
        record(cur, Actor(f"unauthenticated:{row['actor']}", "unknown"), row["action"],
               file_numbers=row["file_numbers"], detail={"query": row["query"], "logged_at": row["at"].isoformat(),
                                                         "from": "access_log"})
    cur.execute("DROP TABLE access_log")
