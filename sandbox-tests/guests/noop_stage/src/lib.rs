//! A stage that does nothing: used where a check is expected, to test world errors.

wit_bindgen::generate!({ path: "../../../wit", world: "stage" });

struct NoopStage;

impl Guest for NoopStage {
    fn run(_: Invocation) -> Result<String, String> {
        Ok("nothing to do".into())
    }
}

export!(NoopStage);
