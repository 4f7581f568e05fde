"""Lake jobs: hourly and daily aggregation written once, run on DuckDB or Spark."""
