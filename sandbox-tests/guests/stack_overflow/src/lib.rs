//! Recurses without end: the stack limit must stop it with a trap, not the host.

wit_bindgen::generate!({ path: "../../../wit", world: "check" });

#[inline(never)]
#[expect(unconditional_recursion, reason = "recursing without end is what this guest is for")]
fn dive(depth: u64, pad: [u8; 256]) -> u64 {
    let pad = std::hint::black_box(pad);
    dive(depth + 1, pad) + u64::from(pad[0])
}

struct StackOverflow;

impl Guest for StackOverflow {
    fn check(_: Invocation) -> Result<Vec<Finding>, String> {
        let depth = dive(0, [1; 256]);
        Err(format!("came back from depth {depth}"))
    }
}

export!(StackOverflow);
