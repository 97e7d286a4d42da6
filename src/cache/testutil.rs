//! Pipelines built in code for the cache's unit tests.

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::{
    Action, CacheConfig, CachePolicy, CommandLine, Download, HttpConfig, InputPattern, Pipeline,
    RelPath, RetryPolicy, Task, TaskKind,
};
use crate::plan::Plan;
use crate::template::Template;

pub fn command(name: &str, run: &str) -> Task {
    Task {
        name: name.into(),
        description: None,
        deps: vec![],
        action: Action::Command(CommandLine::Shell(Template::literal(run))),
        cwd: None,
        env: BTreeMap::new(),
        inputs: vec![],
        outputs: vec![],
        timeout: None,
        retry: RetryPolicy::default_for(TaskKind::Command),
        uses: BTreeMap::new(),
        cache: CachePolicy::Auto,
        keep_failed_outputs: false,
        cache_ttl: None,
        origin: None,
        expands: None,
        order_only: 0,
        remote: true,
        platform: BTreeMap::new(),
    }
}

pub fn download(name: &str, url: &str, dest: &str, pin: Option<&str>) -> Task {
    let mut t = command(name, "");
    t.action = Action::Download(Download {
        urls: vec![Template::literal(url)],
        dest: RelPath::parse(dest).unwrap(),
        sha256: pin.map(str::to_string),
        pin_source: Default::default(),
        headers: BTreeMap::new(),
        max_bytes: None,
        resume: true,
        revalidate: false,
    });
    t.retry = RetryPolicy::default_for(TaskKind::Download);
    t
}

pub fn with_io(mut t: Task, inputs: &[&str], outputs: &[&str], deps: &[&str]) -> Task {
    t.inputs = inputs
        .iter()
        .map(|g| InputPattern {
            glob: g.trim_start_matches('?').into(),
            optional: g.starts_with('?'),
        })
        .collect();
    t.outputs = outputs.iter().map(|o| RelPath::parse(o).unwrap()).collect();
    t.deps = deps.iter().map(|d| (*d).into()).collect();
    t
}

pub fn pipeline(root: &Path, tasks: Vec<Task>) -> Pipeline {
    let mut map = crate::model::TaskMap::default();
    for t in tasks {
        map.insert(t.name.clone(), t);
    }
    Pipeline {
        manifest_path: root.join("taskrun.toml"),
        root: root.to_path_buf(),
        name: "test".into(),
        description: None,
        concurrency: 2,
        fail_fast: true,
        env: BTreeMap::new(),
        pools: BTreeMap::new(),
        cache: CacheConfig {
            dir: root.join(".taskrun/cache"),
            remote: None,
            remote_write: false,
            instance: String::new(),
            headers: BTreeMap::new(),
        },
        http: HttpConfig::default(),
        execution: Default::default(),
        tasks: map,
        dep_indices: None,
        fanouts: Vec::new(),
        item_sources: Vec::new(),
    }
}

pub fn plan(root: &Path, tasks: Vec<Task>) -> Plan {
    Plan::build(pipeline(root, tasks), &[]).unwrap()
}
