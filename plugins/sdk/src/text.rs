//! Positions in files and short messages: [`line_col`] and [`one_line`].

/// Converts a byte offset in `text` into a 1-based (line, column), counting
/// columns in characters (invalid UTF-8 counts one column per byte).
///
/// ```
/// let text = "fn main() {\n    // FIXME\n}\n".as_bytes();
/// let offset = text.windows(5).position(|w| w == b"FIXME").unwrap();
/// assert_eq!(cleanroom_plugin_sdk::line_col(text, offset), (2, 8));
/// ```
pub fn line_col(text: &[u8], offset: usize) -> (u32, u32) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (to_u32(line), to_u32(column))
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Cuts `text` to at most `max` characters on one line, for messages:
/// control characters become spaces, the ends are trimmed, and a cut text
/// ends in `…`.
///
/// ```
/// assert_eq!(cleanroom_plugin_sdk::one_line("a\nb", 10), "a b");
/// assert_eq!(cleanroom_plugin_sdk::one_line("abcdef", 4), "abc…");
/// ```
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        flat.to_string()
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let text = "ab\nçd todo\n".as_bytes();
        let offset = text.windows(4).position(|w| w == b"todo").unwrap();
        assert_eq!(line_col(text, offset), (2, 4));
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, usize::MAX), (3, 1));
    }

    #[test]
    fn one_line_flattens_and_cuts() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(one_line("  abc\t", 3), "abc");
    }
}
