//! A small program built from source by `pipelines/native-build.toml`:
//! prints the first Fibonacci numbers, or as many as its argument asks for.

fn main() {
    let count: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(10);
    let (mut a, mut b) = (0u64, 1u64);
    let mut numbers = Vec::with_capacity(count);
    for _ in 0..count {
        numbers.push(a.to_string());
        (a, b) = (b, a.saturating_add(b));
    }
    println!("{}", numbers.join(" "));
}
