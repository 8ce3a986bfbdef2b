//! The subject {{name}}'s tests run: prints its arguments joined by spaces,
//! then a newline, like `echo`, and exits 0.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect(); // skip the program name
    println!("{}", args.join(" "));
}
