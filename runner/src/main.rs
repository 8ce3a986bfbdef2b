//! The `cleanroom` binary: a thin shell over the library's CLI.

#[expect(clippy::exit, reason = "the binary's only job is to turn the CLI's result into an exit code")]
fn main() {
    std::process::exit(cleanroom::cli::main());
}
