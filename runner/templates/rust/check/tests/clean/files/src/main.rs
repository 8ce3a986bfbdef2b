/// Greets the user.
fn main() {
    println!("hello");
}
