//! Building a fan-out's instances, on every core for a large one: each instance is built
//! alone (its key, its task, its problems), and the caller then takes them in order, so the
//! result and its diagnostics are the same however many threads built them.

use std::ops::Range;

use super::super::diagnostic::Problem;
use super::super::interpolate::{Context, ItemScope};
use super::super::task::{TaskBuilder, TaskSpans};
use super::super::walk::Reader;
use super::sources::Item;
use super::{Items, instance_key};
use crate::model::Task;

/// Instances below which a fan-out is built on one thread (a thread costs more than a few
/// hundred instances take).
const PARALLEL_FROM: usize = 2_000;

/// Instances built (on all threads) before they are taken: enough to keep the threads'
/// start-up small against their work, few enough that the built tasks waiting to be taken
/// stay a fraction of the whole (all 100,000 at once raised the peak RSS of `check` by 29%).
const BATCH: usize = 8_192;

/// One instance as built, before its key is compared with the others'.
pub(super) struct Built {
    /// Its key, when it could be made.
    pub key: Option<String>,
    /// The task, when it could be built.
    pub task: Option<(Task, TaskSpans)>,
    /// What was wrong with it, in the order found.
    pub problems: Vec<Problem>,
}

/// What every instance is built from.
pub(super) struct Recipe<'a, 'b, 'i> {
    /// The manifest text, for the problems' spans.
    pub source: &'a str,
    /// The fan-out task's table and context, as a hand-written task is built from.
    pub builder: &'a TaskBuilder<'b, 'i>,
    /// `key = "..."` and where it is, when the task sets one.
    pub key_template: Option<&'a (String, Range<usize>)>,
    /// The matrix rows (one empty row without a matrix) and the axes.
    pub items: &'a Items,
    /// The items of `for_each` (one `None` without it); instance `n` is row
    /// `n / sources.len()` with item `n % sources.len()`.
    pub sources: &'a [Option<&'a Item>],
}

impl Recipe<'_, '_, '_> {
    /// Hands every instance to `take`, in (row, item) order, with its index. A large
    /// fan-out is built a batch at a time, each batch split over the cores, so no more than
    /// a batch of built tasks waits beside the ones already taken.
    pub fn build_each(&self, mut take: impl FnMut(usize, Built)) {
        let total = self.items.rows.len() * self.sources.len();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(total / (PARALLEL_FROM / 2))
            .max(1);
        if threads == 1 {
            for n in 0..total {
                take(n, self.build(n));
            }
            return;
        }
        let mut start = 0;
        while start < total {
            let end = (start + BATCH).min(total);
            for (n, built) in (start..).zip(self.build_range(start..end, threads)) {
                take(n, built);
            }
            start = end;
        }
    }

    /// The instances in `range`, built on `threads` threads, in order.
    fn build_range(&self, range: Range<usize>, threads: usize) -> Vec<Built> {
        let chunk = range.len().div_ceil(threads);
        let part = |t: usize| {
            let from = (range.start + t * chunk).min(range.end);
            from..(from + chunk).min(range.end)
        };
        std::thread::scope(|s| {
            let rest: Vec<_> = (1..threads)
                .map(|t| {
                    let range = part(t);
                    s.spawn(move || range.map(|n| self.build(n)).collect::<Vec<_>>())
                })
                .collect();
            let mut all: Vec<Built> = Vec::with_capacity(range.len());
            all.extend(part(0).map(|n| self.build(n)));
            for built in rest {
                match built.join() {
                    Ok(built) => all.extend(built),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            all
        })
    }

    /// The `n`th instance: row `n / sources`, item `n % sources`.
    fn build(&self, n: usize) -> Built {
        let row = &self.items.rows[n / self.sources.len()];
        let item = self.sources[n % self.sources.len()];
        let mut r = Reader {
            source: self.source,
            problems: Vec::new(),
        };
        let scope = ItemScope {
            matrix: &row.values,
            item: item.map_or(&[], |i| i.fields.as_slice()),
            any: self.items.any,
        };
        let b = self.builder;
        let ctx = Context {
            item: Some(&scope),
            ..*b.ctx
        };
        let key = instance_key(
            &mut r,
            b,
            self.key_template,
            &ctx,
            row,
            item,
            &self.items.axes,
        );
        let task = key.as_ref().and_then(|_| {
            TaskBuilder {
                name: b.name,
                name_span: b.name_span.clone(),
                table: b.table,
                defaults: b.defaults,
                ctx: &ctx,
            }
            .build(&mut r)
        });
        Built {
            key,
            task,
            problems: r.problems,
        }
    }
}
