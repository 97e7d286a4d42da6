//! Where each byte of a string value was written in the manifest, so a mistake found inside
//! the value (`${vars.nope}` in a `run`) is pointed at exactly, also when the string holds
//! escapes (`\u00e9`, `\\`) or spans lines (`"""`, a line-ending backslash).

/// A string token's text (quotes included) decoded as TOML decodes it, with the offset in
/// the token of every decoded byte, plus one for the end. `None` for what is not a string
/// token this decoder knows; the caller then points at the whole value.
pub fn decode(raw: &str) -> Option<(String, Vec<usize>)> {
    let quote = ["\"\"\"", "'''", "\"", "'"]
        .into_iter()
        .find(|q| raw.len() >= 2 * q.len() && raw.starts_with(q) && raw.ends_with(q))?;
    let multi_line = quote.len() == 3;
    let literal = quote.starts_with('\'');
    let start = quote.len();
    let body = &raw[start..raw.len() - quote.len()];
    let mut out = Decoded::default();
    let mut i = 0;
    // A newline right after the opening quotes is not part of the value.
    if multi_line {
        i = [("\r\n", 2), ("\n", 1)]
            .into_iter()
            .find(|(nl, _)| body.starts_with(nl))
            .map_or(0, |(_, n)| n);
    }
    while let Some(c) = body.get(i..).and_then(|rest| rest.chars().next()) {
        let at = start + i;
        if literal || c != '\\' {
            out.push(c, at);
            i += c.len_utf8();
            continue;
        }
        let rest = &body[i + 1..];
        let escaped = rest.chars().next()?;
        let simple = match escaped {
            'b' => Some('\u{8}'),
            't' => Some('\t'),
            'n' => Some('\n'),
            'f' => Some('\u{c}'),
            'r' => Some('\r'),
            'e' => Some('\u{1b}'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c, at);
            i += 2;
            continue;
        }
        let digits = match escaped {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            ' ' | '\t' | '\r' | '\n' if multi_line => {
                // A line-ending backslash: it and all blanks and newlines after it vanish.
                let kept = rest.trim_start_matches([' ', '\t', '\r', '\n']);
                i += 1 + rest.len() - kept.len();
                continue;
            }
            _ => return None,
        };
        let hex = rest.get(1..1 + digits)?;
        let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
        out.push(c, at);
        i += 2 + digits;
    }
    out.offsets.push(start + body.len());
    Some((out.text, out.offsets))
}

#[derive(Default)]
struct Decoded {
    text: String,
    offsets: Vec<usize>,
}

impl Decoded {
    /// `c`, written at `at` in the token: each of its UTF-8 bytes maps there.
    fn push(&mut self, c: char, at: usize) {
        self.text.push(c);
        self.offsets.extend(std::iter::repeat_n(at, c.len_utf8()));
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    /// The token text from the offset of the decoded byte range `at..at + len`.
    fn written(raw: &str, decoded_at: usize, len: usize) -> String {
        let (_, map) = decode(raw).unwrap();
        raw[map[decoded_at]..map[decoded_at + len]].to_string()
    }

    #[test]
    fn escapes_and_line_ends_map_back_to_where_they_were_written() {
        let raw = r#""echo \u00e9 ${vars.nope}""#;
        let (text, _) = decode(raw).unwrap();
        assert_eq!(text, "echo é ${vars.nope}");
        let at = text.find('$').unwrap();
        assert_eq!(written(raw, at, 12), "${vars.nope}");

        // A CRLF inside the string is kept (as TOML keeps it); the one after `"""` is not.
        let raw = "\"\"\"\r\nline one \\\r\n    ${vars.x}\r\nend\"\"\"";
        let (text, _) = decode(raw).unwrap();
        assert_eq!(text, "line one ${vars.x}\r\nend");
        assert_eq!(written(raw, text.find('$').unwrap(), 9), "${vars.x}");

        let raw = "'''\nC:\\path ${vars.y}'''";
        let (text, _) = decode(raw).unwrap();
        assert_eq!(text, "C:\\path ${vars.y}");
        assert_eq!(written(raw, text.find('$').unwrap(), 9), "${vars.y}");
    }

    #[test]
    fn what_is_not_a_known_string_token_is_left_alone() {
        assert!(decode("bare").is_none());
        assert!(decode(r#""bad \q escape""#).is_none());
    }
}
