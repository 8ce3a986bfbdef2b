//! The `cleanroom` binary: a thin shell over the library's CLI.

fn main() {
    let code = cleanroom::cli::main();
    cleanroom::scratch::release();
    std::process::exit(code);
}
