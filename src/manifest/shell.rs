//! Where in shell text a fan-out value may go, and how it becomes exactly one shell word.
//!
//! A value from an item file is data. Single quotes make any value one literal word, but only
//! where the shell treats them as quotes: not inside other quotes, not in a comment (a newline
//! in the value would end it), not right after a backslash (which would escape the opening
//! quote), not in a here-document body (where quotes are literal and `$(...)` runs). A
//! placeholder in any of those places is a load error instead.

use std::borrow::Cow;

/// Why a placeholder at the end of `before` (shell text up to it) cannot be quoted there, or
/// `None` when it stands where a word may start.
pub fn unquotable_context(before: &str) -> Option<&'static str> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Plain,
        Single,
        Double,
        Comment,
        /// `$((...))`, with the depth of the parentheses open inside it: read like double
        /// quotes, so single quotes there quote nothing.
        Arith(u32),
        /// `` `...` ``: the shell finds its end before it reads any quote inside it.
        Backtick,
    }
    let bytes = before.as_bytes();
    let mut state = State::Plain;
    // The states a `$(` (or a subshell's `(`) left: inside it quoting starts afresh, also
    // within double quotes (`"$(printf '%s' ${item.x})"`); its `)` returns to them.
    let mut outer: Vec<State> = Vec::new();
    // Here-documents whose body starts at the next newline: (delimiter, strip leading tabs).
    let mut pending: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match (state, c) {
            (State::Plain, b'\\') | (State::Double, b'\\') => {
                if i + 1 == bytes.len() {
                    return Some(if state == State::Plain {
                        "right after a backslash"
                    } else {
                        "inside double quotes"
                    });
                }
                i += 2;
                continue;
            }
            (State::Backtick | State::Arith(_), b'\\') => {
                i += 2;
                continue;
            }
            (State::Plain | State::Double | State::Arith(_), b'$')
                if bytes.get(i + 1) == Some(&b'(') =>
            {
                outer.push(state);
                if bytes.get(i + 2) == Some(&b'(') {
                    state = State::Arith(0);
                    i += 3;
                } else {
                    state = State::Plain;
                    i += 2;
                }
                continue;
            }
            (State::Arith(d), b'(') => state = State::Arith(d + 1),
            (State::Arith(d), b')') if d > 0 => state = State::Arith(d - 1),
            (State::Arith(_), b')') => {
                state = outer.pop().unwrap_or(State::Plain);
                // `))` ends it; a lone `)` is malformed: leave it as it came.
                if bytes.get(i + 1) == Some(&b')') {
                    i += 1;
                }
            }
            (State::Plain | State::Double, b'`') => {
                outer.push(state);
                state = State::Backtick;
            }
            (State::Backtick, b'`') => state = outer.pop().unwrap_or(State::Plain),
            (State::Plain, b'(') => outer.push(State::Plain),
            (State::Plain, b')') => state = outer.pop().unwrap_or(State::Plain),
            (State::Plain, b'\'') => state = State::Single,
            (State::Plain, b'"') => state = State::Double,
            (State::Single, b'\'') | (State::Double, b'"') => state = State::Plain,
            (State::Plain, b'#') if i == 0 || starts_word(bytes[i - 1]) => state = State::Comment,
            (State::Plain, b'<') if bytes.get(i + 1) == Some(&b'<') => {
                if bytes.get(i + 2) == Some(&b'<') {
                    i += 3; // `<<<` is a here-string: an ordinary word follows.
                    continue;
                }
                let (delimiter, end) = heredoc_delimiter(before, i + 2);
                pending.push(delimiter);
                i = end;
                continue;
            }
            (State::Comment, b'\n') => state = State::Plain,
            _ => {}
        }
        if c == b'\n' && state == State::Plain && !pending.is_empty() {
            // The bodies follow, one after the other, each up to its delimiter line.
            let mut at = i + 1;
            for (delimiter, strip_tabs) in pending.drain(..) {
                loop {
                    let Some(len) = before[at..].find('\n') else {
                        return Some("inside a here-document");
                    };
                    let line = &before[at..at + len];
                    let line = if strip_tabs {
                        line.trim_start_matches('\t')
                    } else {
                        line
                    };
                    at += len + 1;
                    if line == delimiter {
                        break;
                    }
                }
            }
            i = at;
            continue;
        }
        i += 1;
    }
    match state {
        State::Plain => None,
        State::Single => Some("inside single quotes"),
        State::Double => Some("inside double quotes"),
        State::Comment => Some("inside a shell comment"),
        State::Arith(_) => Some("inside an arithmetic expansion `$((...))`"),
        State::Backtick => Some("inside backquotes (write `$(...)` instead)"),
    }
}

/// A `#` starts a comment only at the start of a word.
fn starts_word(prev: u8) -> bool {
    prev.is_ascii_whitespace() || b";&|()<>".contains(&prev)
}

/// The delimiter word after `<<` (or `<<-`) at `from`, its quotes removed, and where it ends.
fn heredoc_delimiter(text: &str, from: usize) -> ((String, bool), usize) {
    let bytes = text.as_bytes();
    let mut i = from;
    let strip_tabs = bytes.get(i) == Some(&b'-');
    if strip_tabs {
        i += 1;
    }
    while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
        i += 1;
    }
    let mut word = String::new();
    let mut quote = None;
    while let Some(&b) = bytes.get(i) {
        match (quote, b) {
            (None, b'\'' | b'"') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            (None, b'\\') => {}
            (None, _) if b.is_ascii_whitespace() || b";&|()<>".contains(&b) => break,
            _ => word.push(b as char),
        }
        i += 1;
    }
    ((word, strip_tabs), i)
}

/// `value` as exactly one POSIX shell word: as is when every character is inert, otherwise
/// single-quoted (a `'` inside becomes `'\''`). Newlines, `$`, backticks and `;` are all
/// literal inside single quotes.
pub fn shell_word(value: &str) -> Cow<'_, str> {
    let inert = |b: u8| b.is_ascii_alphanumeric() || b"_-./:@%+,".contains(&b);
    if !value.is_empty() && value.bytes().all(inert) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(format!("'{}'", value.replace('\'', "'\\''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("raw/a.csv"), "raw/a.csv");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("it's $(x)"), "'it'\\''s $(x)'");
        assert_eq!(shell_word("a=b"), "'a=b'");
    }

    #[test]
    fn placeholders_where_quotes_do_not_quote_are_found() {
        assert_eq!(unquotable_context("echo "), None);
        assert_eq!(unquotable_context("echo 'a' \"b\" c\\ d "), None);
        assert_eq!(unquotable_context("echo '"), Some("inside single quotes"));
        assert_eq!(
            unquotable_context("echo \"x "),
            Some("inside double quotes")
        );
        assert_eq!(
            unquotable_context("echo \\"),
            Some("right after a backslash")
        );
        assert_eq!(
            unquotable_context("true # "),
            Some("inside a shell comment")
        );
        assert_eq!(unquotable_context("true # c\necho "), None);
        // A command substitution quotes afresh, also inside double quotes.
        assert_eq!(unquotable_context("echo \"$(printf '%s' "), None);
        assert_eq!(
            unquotable_context("echo \"$(printf '%s' x) "),
            Some("inside double quotes")
        );
        assert_eq!(
            unquotable_context("echo \"$(printf \"%s "),
            Some("inside double quotes")
        );
        assert_eq!(unquotable_context("(cd a && echo "), None);
        // Arithmetic reads its text like double quotes; backquotes end at the value's own.
        let arith = Some("inside an arithmetic expansion `$((...))`");
        assert_eq!(unquotable_context(": $(( "), arith);
        assert_eq!(unquotable_context("x=$(((1+2)*"), arith);
        assert_eq!(unquotable_context("echo $(( $(echo 1) + "), arith);
        assert_eq!(unquotable_context("echo $(echo $(("), arith);
        assert_eq!(unquotable_context("echo \"$(( "), arith);
        assert_eq!(unquotable_context("echo $((1+2)) "), None);
        assert_eq!(unquotable_context("echo $(( $(printf '%s' "), None);
        let back = Some("inside backquotes (write `$(...)` instead)");
        assert_eq!(unquotable_context("echo `echo "), back);
        assert_eq!(unquotable_context("echo \"`echo "), back);
        assert_eq!(unquotable_context("echo `date` "), None);
        assert_eq!(unquotable_context("echo a#b "), None);
        assert_eq!(
            unquotable_context("cat <<EOF\n"),
            Some("inside a here-document")
        );
        assert_eq!(
            unquotable_context("cat <<-'E' >x\n\tl\n"),
            Some("inside a here-document")
        );
        assert_eq!(unquotable_context("cat <<EOF\nbody\nEOF\necho "), None);
        assert_eq!(unquotable_context("cat <<< "), None);
    }
}
