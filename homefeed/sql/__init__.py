"""SQL over the lake: every table a view, read-only by default, every query logged."""

from homefeed.sql.query import QUERY_LOG_TOPIC, QueryError, QueryResult, check_statement, run_query

__all__ = ["QUERY_LOG_TOPIC", "QueryError", "QueryResult", "check_statement", "run_query"]
