//! A fan-out task whose items another task produces (SPEC §9, "expanded after"): until that
//! task has run, the task is one stand-in, `NAME[*]`, that waits for its producers and that
//! its dependents wait for. `run` parks the stand-in, runs what it can, loads the manifest
//! again with the producers finished (see [`crate::manifest::LoadOptions::finished`]) and
//! runs the instances; `plan` and `check` show the stand-in as it is.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::manifest::task::{TaskBuilder, TaskSpans};
use crate::manifest::walk::{Reader, get};
use crate::model::{CachePolicy, Expansion, ItemSource, RetryPolicy, Task, TaskKind};

/// Why a fan-out task waits: the tasks that produce its items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deferral {
    /// The producing tasks by name (instances by their own name, stand-ins as `NAME[*]`).
    pub producers: Vec<String>,
    /// The same tasks as declared (`unpack`), each once, for messages and the plan.
    pub after: Vec<String>,
}

/// The fan-out tasks expanded after their producers, by declared name.
pub type Deferrals = BTreeMap<String, Deferral>;

/// The stand-in's name for the fan-out task `name`.
pub fn stand_in_name(name: &str) -> String {
    format!("{name}[*]")
}

/// Builds the stand-in of the fan-out task `b` describes, which reads `source` once
/// `deferral`'s producers have run. Its deps are the task's own that name no item (those
/// that do are resolved per instance later); the producers are among them, or theirs.
pub fn stand_in(
    r: &mut Reader<'_>,
    b: &TaskBuilder<'_, '_>,
    source: ItemSource,
    deferral: &Deferral,
    description: Option<String>,
) -> (Task, TaskSpans) {
    // The task depends on every producer (else it is an error, not deferred): its own deps
    // that name no item are what it waits for.
    let mut deps: Vec<String> = Vec::new();
    let mut dep_spans: Vec<Range<usize>> = Vec::new();
    if let Some(v) = get(b.table, "deps")
        && let Some(list) = r.strings(v, &b.what("deps"), false)
    {
        for (text, at) in list {
            if !text.contains("${") && !deps.contains(&text) {
                deps.push(text);
                dep_spans.push(at);
            }
        }
    }
    // A task that may reach its producers only through a paired dep (`get[${item.name}]`,
    // resolved per instance later): the stand-in waits for the producers themselves.
    let paired = waited_deps(b.table).len() > deps.len();
    for p in deferral.producers.iter().filter(|_| paired) {
        if !deps.contains(p) {
            deps.push(p.clone());
            dep_spans.push(b.name_span.clone());
        }
    }
    let kind = instance_kind(b);
    let (outputs, output_spans) = literal_outputs(r, b);
    let task = Task {
        name: stand_in_name(b.name),
        description,
        deps,
        action: crate::model::Action::Group,
        cwd: None,
        env: BTreeMap::new(),
        inputs: Vec::new(),
        outputs,
        timeout: None,
        retry: RetryPolicy::default_for(TaskKind::Group),
        uses: BTreeMap::new(),
        cache: CachePolicy::Off,
        keep_failed_outputs: false,
        cache_ttl: None,
        origin: None,
        remote: false,
        platform: BTreeMap::new(),
        expands: Some(Box::new(Expansion {
            task: b.name.to_string(),
            after: deferral.after.clone(),
            source,
            kind,
            writes: output_prefixes(b),
        })),
        order_only: 0,
    };
    let spans = TaskSpans {
        name: b.name_span.clone(),
        deps: dep_spans,
        outputs: output_spans,
        uses: Vec::new(),
        uses_from_defaults: false,
    };
    (task, spans)
}

/// The outputs (and `dest`) the instances will have that hold no item or matrix value: known
/// before the items, so `check` holds them to the rules of any output now (no reserved path,
/// no clash with another task's).
fn literal_outputs(
    r: &mut Reader<'_>,
    b: &TaskBuilder<'_, '_>,
) -> (Vec<crate::model::RelPath>, Vec<Range<usize>>) {
    let literal = |t: &str| !t.contains("${item.") && !t.contains("${matrix.");
    let mut texts: Vec<(String, Range<usize>)> = Vec::new();
    if let Some(v) = get(b.table, "outputs")
        && let toml::de::DeValue::Array(list) = v.get_ref()
    {
        for x in list {
            if let toml::de::DeValue::String(s) = x.get_ref() {
                texts.push((s.to_string(), x.span()));
            }
        }
    }
    if let Some(v) = get(b.table, "download")
        && let toml::de::DeValue::Table(t) = v.get_ref()
        && let Some(d) = get(t, "dest")
        && let toml::de::DeValue::String(s) = d.get_ref()
    {
        texts.push((s.to_string(), d.span()));
    }
    let (mut outputs, mut spans) = (Vec::new(), Vec::new());
    for (text, span) in texts.into_iter().filter(|(t, _)| literal(t)) {
        if let Some(p) = b.path_text(r, &text, span.clone(), "output", false)
            && !outputs.contains(&p)
        {
            outputs.push(p);
            spans.push(span);
        }
    }
    (outputs, spans)
}

/// The tasks the task's instances wait for, by the names of its `deps`: a plain name as it
/// is (`"unpack"`), and for a paired dep (`"get[${item.name}]"`) the fan-out task it pairs
/// with (`get`), each of whose instances waits for what `get` waits for. What may produce
/// the task's items is among these or theirs.
pub fn waited_deps(table: &toml::de::DeTable<'_>) -> Vec<String> {
    let Some(toml::de::DeValue::Array(a)) = get(table, "deps").map(|v| v.get_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    for x in a.iter() {
        let toml::de::DeValue::String(s) = x.get_ref() else {
            continue;
        };
        let name = match s.split_once('[') {
            _ if !s.contains("${") => s.as_ref(),
            Some((base, _)) if !base.is_empty() && !base.contains("${") => base,
            _ => continue,
        };
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// The kind the instances will have, from the action key the task is written with.
fn instance_kind(b: &TaskBuilder<'_, '_>) -> TaskKind {
    if get(b.table, "run").is_some() {
        TaskKind::Command
    } else if get(b.table, "download").is_some() {
        TaskKind::Download
    } else if get(b.table, "service").is_some() {
        TaskKind::Service
    } else {
        TaskKind::Group
    }
}

/// The directories the instances will write into: each output's and `dest`'s text before
/// its first placeholder, up to the last `/` (`clean/${item.stem}.csv` → `clean/`), so a
/// fan-out over those files waits for these instances in turn.
fn output_prefixes(b: &TaskBuilder<'_, '_>) -> Vec<String> {
    let mut texts: Vec<String> = Vec::new();
    let strings = |v: &crate::manifest::walk::Val<'_>| -> Vec<String> {
        match v.get_ref() {
            toml::de::DeValue::String(s) => vec![s.to_string()],
            toml::de::DeValue::Array(a) => a
                .iter()
                .filter_map(|x| match x.get_ref() {
                    toml::de::DeValue::String(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    if let Some(v) = get(b.table, "outputs") {
        texts.extend(strings(v));
    }
    if let Some(toml::de::DeValue::Table(d)) = get(b.table, "download").map(|v| v.get_ref())
        && let Some(v) = get(d, "dest")
    {
        texts.extend(strings(v));
    }
    texts
        .into_iter()
        .map(|t| {
            let literal = t.split("${").next().unwrap_or("");
            match (t.contains("${"), literal.rfind('/')) {
                (false, _) => t.trim_start_matches("./").to_string(),
                (true, Some(slash)) => literal[..=slash].trim_start_matches("./").to_string(),
                (true, None) => String::new(),
            }
        })
        .filter(|p| !p.is_empty())
        .collect()
}
