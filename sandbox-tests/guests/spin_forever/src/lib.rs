//! Never returns: a busy loop that only the step's deadline can stop.

wit_bindgen::generate!({ path: "../../../wit", world: "check" });

struct SpinForever;

impl Guest for SpinForever {
    fn check(_: Invocation) -> Result<Vec<Finding>, String> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export!(SpinForever);
