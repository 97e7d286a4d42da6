//! "Did you mean" hints: the closest name to a mistyped one.
//!
//! Task names get more help than other names: an instance `TASK[KEY]` is compared by its key
//! with the instances of the same fan-out task, so a key typed without its extension
//! (`get[a]` for `get[a.csv]`) or a few characters off in a long key still finds its
//! instance, where the edit distance of the whole name would give up.

/// The closest candidate to `name` (edit distance < 3), for "did you mean" hints.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, c)| *d < 3 && *d < c.len().max(name.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// The closest task or instance name to `name` among `candidates` (every task and instance
/// name, and the fan-out tasks' bare names).
pub fn suggest_task<'a, I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str> + Clone,
{
    if let Some((task, key)) = split_instance(name) {
        let tasks = || {
            candidates
                .clone()
                .into_iter()
                .filter_map(|c| split_instance(c).map(|(t, _)| t))
        };
        let task = match tasks().any(|t| t == task) {
            true => Some(task.to_string()),
            false => suggest(task, tasks()),
        };
        let closest = task.as_deref().and_then(|task| {
            candidates
                .clone()
                .into_iter()
                .filter_map(|c| match split_instance(c) {
                    Some((t, k)) if t == task => key_distance(key, k).map(|d| (d, c)),
                    _ => None,
                })
                .min_by_key(|(d, _)| *d)
        });
        if let Some((_, c)) = closest {
            return Some(c.to_string());
        }
        // A task expanded later (its stand-in `TASK[*]`) has no keys yet: any may come.
        if let Some(task) = task
            && candidates
                .clone()
                .into_iter()
                .any(|c| c == format!("{task}[*]"))
        {
            return Some(format!("{task}[{key}]"));
        }
    }
    suggest(name, candidates)
}

/// `TASK[KEY]` as (TASK, KEY); `None` for any other name.
pub fn split_instance(name: &str) -> Option<(&str, &str)> {
    let (task, rest) = name.split_once('[')?;
    Some((task, rest.strip_suffix(']')?))
}

/// How far `typed` is from the instance key `key`, when close enough to suggest: 0 when
/// `typed` is the key without its extension, else 1 + the edit distance, allowed to grow
/// with the key's length (a quarter of it, at least 2).
fn key_distance(typed: &str, key: &str) -> Option<usize> {
    if key.rsplit_once('.').is_some_and(|(stem, _)| stem == typed) {
        return Some(0);
    }
    let d = strsim::levenshtein(typed, key);
    let allowed = (key.chars().count() / 4).max(2);
    (d <= allowed && d < key.len().max(typed.len())).then_some(d + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &[
        "build",
        "get",
        "get[temps-2023-01.csv]",
        "get[temps-2023-02.csv]",
        "get[x/a.txt]",
        "clean",
        "clean[temps-2023-01.csv]",
    ];

    fn names() -> impl Iterator<Item = &'static str> + Clone {
        NAMES.iter().copied()
    }

    #[test]
    fn a_key_without_its_extension_finds_its_instance() {
        assert_eq!(
            suggest_task("get[x/a]", names()).as_deref(),
            Some("get[x/a.txt]")
        );
        assert_eq!(
            suggest_task("get[temps-2023-02]", names()).as_deref(),
            Some("get[temps-2023-02.csv]")
        );
    }

    #[test]
    fn a_long_key_a_few_characters_off_finds_its_instance_of_the_same_task() {
        assert_eq!(
            suggest_task("clean[temps-2023-1.cs]", names()).as_deref(),
            Some("clean[temps-2023-01.csv]")
        );
        // A misspelt task part is corrected first.
        assert_eq!(
            suggest_task("gte[temps-2023-02.csv]", names()).as_deref(),
            Some("get[temps-2023-02.csv]")
        );
    }

    #[test]
    fn nothing_close_suggests_nothing_and_plain_names_keep_the_strict_rule() {
        assert_eq!(suggest_task("get[zzzzzzzz]", names()), None);
        assert_eq!(suggest_task("nope[x/a.txt]", names()), None);
        assert_eq!(suggest_task("biuld", names()).as_deref(), Some("build"));
        assert_eq!(suggest_task("deploy", names()), None);
    }

    #[test]
    fn a_misspelt_task_expanded_later_keeps_the_typed_key() {
        let later = || ["unpack", "clean", "clean[*]"].into_iter();
        assert_eq!(
            suggest_task("clen[a.csv]", later()).as_deref(),
            Some("clean[a.csv]")
        );
        assert_eq!(suggest_task("nope[a.csv]", later()), None);
    }
}
