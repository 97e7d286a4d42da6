//! RFC 4180 quoting, checked strictly before a CSV item file is read. The CSV reader is
//! lenient: a `"` that never closes swallows the rest of the file into one field (the rows
//! after it vanish without a word when it is in the last column), and `x"y"z` or `"a"x` are
//! taken as some other text. Each is a mistake in the file, reported at its place.

/// Where the quoting of `bytes` (a CSV file) breaks RFC 4180, as
/// "`FILE:LINE:COLUMN`: what is wrong", or `Ok`.
pub fn check(rel: &str, bytes: &[u8]) -> Result<(), String> {
    // A UTF-8 byte order mark (a spreadsheet's "CSV UTF-8") is not part of the first field.
    let bom = if bytes.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        AfterQuote,
    }
    let mut state = State::FieldStart;
    let (mut line, mut line_start) = (1usize, bom);
    let mut opened = (1usize, 0usize, 0usize);
    let at = |line: usize, line_start: usize, i: usize| {
        let col = String::from_utf8_lossy(&bytes[line_start..i])
            .chars()
            .count()
            + 1;
        format!("`{rel}:{line}:{col}`")
    };
    for (i, &b) in bytes.iter().enumerate().skip(bom) {
        state = match (state, b) {
            (State::Quoted, b'"') => State::AfterQuote,
            (State::Quoted, _) => State::Quoted,
            (State::FieldStart, b'"') => {
                opened = (line, line_start, i);
                State::Quoted
            }
            (State::AfterQuote, b'"') => State::Quoted,
            (_, b',' | b'\n' | b'\r') => State::FieldStart,
            (State::FieldStart | State::Unquoted, _) if b != b'"' => State::Unquoted,
            (State::FieldStart | State::Unquoted, _) => {
                return Err(format!(
                    "{}: a `\"` inside a field that does not start with one; quote the whole \
                     field and double the quote (`\"x\"\"y\"`)",
                    at(line, line_start, i)
                ));
            }
            (State::AfterQuote, _) => {
                return Err(format!(
                    "{}: text after the `\"` that closes a field; a quoted field ends at its \
                     closing quote (write a quote inside it as `\"\"`)",
                    at(line, line_start, i)
                ));
            }
        };
        if b == b'\n' {
            line += 1;
            line_start = i + 1;
        }
    }
    if state == State::Quoted {
        let (line, line_start, i) = opened;
        return Err(format!(
            "{}: this `\"` opens a field that never closes (it would run on to the end of \
             the file)",
            at(line, line_start, i)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn quoted_fields_with_commas_quotes_and_newlines_pass() {
        let ok = "id,url\na,\"x, \"\"y\"\"\nz\"\r\nb,plain\n\"c\",\"\"\n";
        assert_eq!(check("e.csv", ok.as_bytes()), Ok(()));
        let bom = "\u{feff}\"id\",v\na,1\n";
        assert_eq!(check("e.csv", bom.as_bytes()), Ok(()));
    }

    #[test]
    fn each_broken_quote_is_placed() {
        let cases = [
            (
                "id,url\na,1\nb,\"unterminated\nc,3\n",
                "`e.csv:3:3`",
                "never closes",
            ),
            (
                "id,url\nb,x\"y\"z\n",
                "`e.csv:2:4`",
                "does not start with one",
            ),
            (
                "id,url\n\"a\"x,1\n",
                "`e.csv:2:4`",
                "after the `\"` that closes",
            ),
            (
                "id,url\nä,\"1\"  \n",
                "`e.csv:2:6`",
                "after the `\"` that closes",
            ),
        ];
        for (text, place, what) in cases {
            let err = check("e.csv", text.as_bytes()).unwrap_err();
            assert!(
                err.starts_with(place) && err.contains(what),
                "{text:?}: {err}"
            );
        }
    }
}
