//! The machine-readable report: exactly one JSON document.
//!
//! Shape: `{"pipeline", "status", "duration_ms", "steps": [{"id", "kind",
//! "status", "duration_ms", "reason", "findings": [{"rule", "severity",
//! "message", "path", "line", "column"}], "stdout", "stderr",
//! "output_dropped_bytes"}]}`. Fields are only ever added.

use crate::report::RunReport;

/// Renders `report` as one pretty-printed JSON document with a trailing newline.
pub fn render(report: &RunReport) -> String {
    let mut text = serde_json::to_string_pretty(report).unwrap_or_else(|e| {
        // Serialising plain strings and numbers cannot fail; if it ever does,
        // still emit valid JSON that says so.
        serde_json::json!({ "pipeline": report.pipeline, "status": "error", "error": e.to_string() }).to_string()
    });
    text.push('\n');
    text
}
