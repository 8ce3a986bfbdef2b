/// Greets the user.
fn main() {
    // FIXME: greet by name
    println!("hello");
}
