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
    pub source: &'a str,
    pub builder: &'a TaskBuilder<'b, 'i>,
    pub key_template: Option<&'a (String, Range<usize>)>,
    pub items: &'a Items,
    pub sources: &'a [Option<&'a Item>],
}

impl Recipe<'_, '_, '_> {
    /// Every instance, in (row, item) order.
    pub fn build_all(&self) -> Vec<Built> {
        let total = self.items.rows.len() * self.sources.len();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(total / (PARALLEL_FROM / 2))
            .max(1);
        if threads == 1 {
            return (0..total).map(|n| self.build(n)).collect();
        }
        let chunk = total.div_ceil(threads);
        std::thread::scope(|s| {
            let rest: Vec<_> = (1..threads)
                .map(|t| {
                    let range = (t * chunk).min(total)..((t + 1) * chunk).min(total);
                    s.spawn(move || range.map(|n| self.build(n)).collect::<Vec<_>>())
                })
                .collect();
            let mut all: Vec<Built> = Vec::with_capacity(total);
            all.extend((0..chunk.min(total)).map(|n| self.build(n)));
            for part in rest {
                match part.join() {
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
