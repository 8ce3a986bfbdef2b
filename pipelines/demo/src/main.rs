fn main() {
    let answer = compute();
    println!("{answer}");
}

fn compute() -> u32 {
    todo!("work out the answer")
}

fn later() -> u32 {
    unimplemented!()
}
