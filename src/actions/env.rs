//! Resolving a task's command line, environment and working directory at run time.
//!
//! This is where `${secret.*}` values are read (and only here), so a missing secret fails
//! the task that needs it, not `check` or `plan`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::model::{Action, CommandLine, Pipeline, Readiness, Task};
use crate::template::{MissingSecret, Redactor, Template};

/// The argv to exec: `sh -c TEXT` for a shell string, the array as given otherwise.
pub fn argv(cmd: &CommandLine) -> Result<Vec<String>, MissingSecret> {
    match cmd {
        CommandLine::Shell(t) => Ok(vec!["sh".into(), "-c".into(), t.expose()?]),
        CommandLine::Argv(args) => args.iter().map(Template::expose).collect(),
    }
}

/// `[env]` with the task's `env` over it (the caller's environment is inherited underneath).
pub fn env(pipeline: &Pipeline, task: &Task) -> Result<Vec<(String, String)>, MissingSecret> {
    let mut merged: BTreeMap<&str, &Template> = BTreeMap::new();
    for (k, v) in pipeline.env.iter().chain(task.env.iter()) {
        merged.insert(k, v);
    }
    merged
        .into_iter()
        .map(|(k, v)| Ok((k.to_string(), v.expose()?)))
        .collect()
}

/// The working directory: `cwd` under the root, or the root itself.
pub fn workdir(pipeline: &Pipeline, task: &Task) -> PathBuf {
    match &task.cwd {
        Some(c) => pipeline.root.join(c.as_str()),
        None => pipeline.root.clone(),
    }
}

/// Every form of every set secret the pipeline names, in any task (see [`Redactor`]), and of
/// the remote cache's password (or its user when it has none: a token): what any task
/// prints, reports or records is redacted with it. A command inherits the caller's environment, so it may print a secret
/// that only another task names.
pub fn redactor(pipeline: &Pipeline) -> Redactor {
    let mut templates: Vec<&Template> = pipeline.env.values().collect();
    // The executor's metadata never reaches a command, but a token is a secret all the same.
    templates.extend(pipeline.execution.headers.values());
    // A gRPC remote cache's metadata (`authorization = "Bearer ${secret.TOKEN}"`).
    templates.extend(pipeline.cache.headers.values());
    for task in pipeline.tasks.values() {
        templates.extend(task.env.values());
        match &task.action {
            Action::Command(c) => push_cmd(c, &mut templates),
            Action::Service(s) => {
                push_cmd(&s.run, &mut templates);
                if let Readiness::Url(u) = &s.ready {
                    templates.push(u);
                }
            }
            Action::Download(d) => {
                templates.extend(d.urls.iter());
                templates.extend(d.headers.values());
            }
            Action::Group => {}
        }
    }
    let mut names: Vec<&str> = templates.iter().flat_map(|t| t.secret_names()).collect();
    names.sort_unstable();
    names.dedup();
    let mut values: Vec<String> = names
        .into_iter()
        .filter_map(|n| std::env::var(n).ok())
        .collect();
    if let Some(remote) = pipeline.cache.http_remote() {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        values.push(decode(remote.password().unwrap_or(remote.username())));
    }
    Redactor::new(values)
}

fn push_cmd<'a>(c: &'a CommandLine, out: &mut Vec<&'a Template>) {
    match c {
        CommandLine::Shell(t) => out.push(t),
        CommandLine::Argv(a) => out.extend(a.iter()),
    }
}

/// The words of a shell string that needs no shell: no quoting, expansion, redirection,
/// operators or assignments. Such a command is exec'd directly, as make does, which saves a
/// `sh` process per task; a program that is not found falls back to `sh -c`.
pub fn direct_words(text: &str) -> Option<Vec<String>> {
    const SPECIAL: &[char] = &[
        '$', '`', '\\', '"', '\'', '*', '?', '[', ']', '{', '}', '(', ')', '<', '>', '|', '&', ';',
        '~', '#', '!', '\n', '\r', '\t',
    ];
    if text.contains(SPECIAL) {
        return None;
    }
    let words: Vec<String> = text
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();
    match words.first() {
        Some(first) if !first.contains('=') => Some(words),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::direct_words;

    #[test]
    fn only_plain_words_skip_the_shell() {
        assert_eq!(direct_words("true"), Some(vec!["true".to_string()]));
        assert_eq!(
            direct_words("cargo  build --release=yes"),
            Some(vec!["cargo".into(), "build".into(), "--release=yes".into()])
        );
        for s in [
            "echo $HOME",
            "a && b",
            "a > f",
            "FOO=1 cmd",
            "echo 'x'",
            "ls *.rs",
            "",
            "  ",
        ] {
            assert_eq!(direct_words(s), None, "{s}");
        }
    }
}
