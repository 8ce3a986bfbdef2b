//! Allocates without end: only the step's memory cap can stop it.

wit_bindgen::generate!({ path: "../../../wit", world: "check" });

struct MemoryBomb;

impl Guest for MemoryBomb {
    fn check(_: Invocation) -> Result<Vec<Finding>, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
}

export!(MemoryBomb);
