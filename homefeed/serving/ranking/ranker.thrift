// The ranking service: score a user's candidate pins with the current ranker.
// Loaded at import by thriftpy2 (homefeed/serving/ranking/__init__.py); no generated code.

namespace py homefeed.ranker

// The candidates' feature matrix. Prefer `packed` (row-major little-endian float32,
// n_rows x n_cols): one bytes field instead of n_rows x n_cols tagged doubles.
struct ScoreRequest {
  1: required string request_id,
  2: required i64 user_id,
  3: optional string model_version,  // if set, the server must run exactly this version
  4: required list<string> feature_names,
  5: optional list<list<double>> rows,
  6: optional binary packed,
  7: optional i32 n_rows,
  8: optional i32 n_cols,
  9: optional list<i64> pin_ids,  // one per row, for logging and tie-breaking
}

struct ScoreResponse {
  1: required list<double> scores,  // one per row, in request order
  2: required string model_version,
}

// code: bad_request | feature_mismatch | version_mismatch | internal
exception RankerError {
  1: required string code,
  2: required string message,
  3: optional list<string> missing_features,
  4: optional list<string> extra_features,
}

struct HealthResponse {
  1: required string status,  // "ok"
  2: required string model_version,
  3: required i32 n_features,
}

service Ranker {
  ScoreResponse score(1: ScoreRequest req) throws (1: RankerError e),
  HealthResponse health(),
}
