//! FizzBuzz, as `specs/fizzbuzz.md` describes it.
//!
//! This is the starting point of the factory demo: the coding stage (an
//! agent) implements the program here.

fn main() {
    // To be implemented by the agent: see specs/fizzbuzz.md.
}
