//! The templates of a fan-out task expanded after its producer, checked when the manifest
//! loads: its items do not exist yet, but a glob's and a lines file's fields are fixed, so an
//! unknown `${item.X}` or a placeholder inside shell quotes is a problem `check` and `plan`
//! report, not one the run meets after the producer has run. A task whose items cannot be
//! read at all is built once from stand-in values, so its other problems are not hidden.

use super::matrix::{self, Row};
use super::sources::{Item, SourceKind};
use super::{Items, instances};
use crate::manifest::task::TaskBuilder;
use crate::manifest::walk::{Reader, get};
use crate::model::TaskMap;

/// The label of a template problem (see `load::report_interpolation`).
const CANNOT_INTERPOLATE: &str = "cannot interpolate";

/// Builds one instance of `b` from a stand-in item of `kind`'s fields, and records the
/// template problems it meets (an item file's columns are not known: a CSV is not probed).
pub(super) fn check_templates(r: &mut Reader<'_>, b: &TaskBuilder<'_, '_>, kind: SourceKind) {
    let fields: &[(&str, &str)] = match kind {
        SourceKind::Glob => &[
            ("path", "probe/p.txt"),
            ("name", "p.txt"),
            ("stem", "p"),
            ("ext", "txt"),
            ("dir", "probe"),
        ],
        SourceKind::Lines => &[
            ("line", "http://127.0.0.1/p.txt"),
            ("name", "p.txt"),
            ("stem", "p"),
            ("ext", "txt"),
        ],
        SourceKind::Csv => return,
    };
    // The matrix's own problems are reported where the task is read; here only its axes.
    let mut scratch = Reader {
        source: r.source,
        problems: Vec::new(),
    };
    let (axes, rows) = match get(b.table, "matrix") {
        Some(v) => match matrix::read(&mut scratch, v, b.name) {
            Some(read) => read,
            None => return,
        },
        None => (Vec::new(), Vec::new()),
    };
    let row = rows.into_iter().next().unwrap_or(Row {
        values: Vec::new(),
        origin: String::new(),
    });
    let item = Item {
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        key: "p.txt".into(),
        origin: String::new(),
    };
    let items = Items {
        axes,
        rows: vec![row],
        items: Some(vec![item]),
        any: false,
    };
    let templates_only =
        |p: &crate::manifest::diagnostic::Problem| p.label.as_deref() == Some(CANNOT_INTERPOLATE);
    report_probe(r, b, &items, &templates_only);
}

/// Builds one instance of `b` in which every `${matrix.*}` and `${item.*}` stands for a plain
/// value, and records its problems: the task's items could not be read (that problem is
/// reported), and its keys, fields and other templates are still the user's to fix.
pub(super) fn check_body(r: &mut Reader<'_>, b: &TaskBuilder<'_, '_>) {
    let items = Items {
        axes: Vec::new(),
        rows: vec![Row {
            values: Vec::new(),
            origin: String::new(),
        }],
        items: Some(vec![Item {
            fields: Vec::new(),
            key: "p".into(),
            origin: String::new(),
        }]),
        any: true,
    };
    report_probe(r, b, &items, &|_| true);
}

/// Builds the one instance `items` gives and records in `r` the problems `keep` takes, said
/// of every item to come rather than of the stand-in one.
fn report_probe(
    r: &mut Reader<'_>,
    b: &TaskBuilder<'_, '_>,
    items: &Items,
    keep: &dyn Fn(&crate::manifest::diagnostic::Problem) -> bool,
) {
    let mut probe = Reader {
        source: r.source,
        problems: Vec::new(),
    };
    let (mut tasks, mut spans) = (TaskMap::default(), Vec::new());
    instances(&mut probe, b, items, &mut tasks, &mut spans);
    for mut p in probe.problems.into_iter().filter(|p| keep(p)) {
        if let Some(at) = p.message.rfind(" (instance ") {
            p.message.truncate(at);
        }
        r.push(p);
    }
}
