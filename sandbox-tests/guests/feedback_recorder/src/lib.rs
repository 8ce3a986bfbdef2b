//! Records what a stage is told: writes its attempt number and every feedback line to `/out/attempt-N.txt` (one line each), then succeeds.

wit_bindgen::generate!({ path: "../../../wit", world: "stage" });

struct FeedbackRecorder;

impl Guest for FeedbackRecorder {
    fn run(invocation: Invocation) -> Result<String, String> {
        let mut text = String::new();
        for line in &invocation.feedback {
            text.push_str(line);
            text.push('\n');
        }
        let path = format!("/out/attempt-{}.txt", invocation.attempt);
        std::fs::write(&path, text).map_err(|e| format!("cannot write `{path}`: {e}"))?;
        Ok(format!("recorded {} feedback lines", invocation.feedback.len()))
    }
}

export!(FeedbackRecorder);
