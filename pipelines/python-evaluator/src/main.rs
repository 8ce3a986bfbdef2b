//! `rpn`: a tiny reverse-Polish calculator, the subject that
//! `pipelines/python-evaluator.toml` builds with rustc and judges with the
//! Python `cli-scenarios` evaluator.
//!
//! `rpn 2 3 + 4 *` evaluates its arguments and prints `20`. With no
//! arguments it reads one expression per line from stdin and prints one
//! result per line (blank lines are skipped). Numbers are 64-bit integers;
//! operators are `+ - * /`. A malformed expression, a division by zero or an
//! overflow prints `error: ...` to stderr and exits with 1.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

/// Evaluates one expression given as tokens.
fn eval<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Result<i64, String> {
    let mut stack: Vec<i64> = Vec::new();
    for token in tokens {
        let op: fn(i64, i64) -> Option<i64> = match token {
            "+" => i64::checked_add,
            "-" => i64::checked_sub,
            "*" => i64::checked_mul,
            "/" => i64::checked_div,
            number => {
                let value = number.parse().map_err(|_| format!("not a number or operator: {number}"))?;
                stack.push(value);
                continue;
            }
        };
        let (Some(b), Some(a)) = (stack.pop(), stack.pop()) else {
            return Err(format!("`{token}` needs two operands"));
        };
        if token == "/" && b == 0 {
            return Err("division by zero".into());
        }
        stack.push(op(a, b).ok_or("overflow")?);
    }
    match stack.as_slice() {
        [value] => Ok(*value),
        [] => Err("empty expression".into()),
        _ => Err(format!("{} values left on the stack: missing an operator", stack.len())),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut results = Vec::new();
    if args.is_empty() {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else {
                eprintln!("error: stdin is not UTF-8 text");
                return ExitCode::FAILURE;
            };
            if !line.trim().is_empty() {
                results.push(eval(line.split_whitespace()));
            }
        }
    } else {
        results.push(eval(args.iter().map(String::as_str)));
    }
    let mut out = io::stdout().lock();
    for result in results {
        match result {
            Ok(value) => {
                let _ = writeln!(out, "{value}");
            }
            Err(message) => {
                let _ = out.flush();
                eprintln!("error: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
