//! The `cleanroom` binary: a thin shell over the library's CLI.

fn main() {
    std::process::exit(cleanroom::cli::main());
}
