//! Does nothing and finds nothing: the baseline for per-invocation overhead.

wit_bindgen::generate!({ path: "../../../wit", world: "check" });

struct Noop;

impl Guest for Noop {
    fn check(_: Invocation) -> Result<Vec<Finding>, String> {
        Ok(Vec::new())
    }
}

export!(Noop);
