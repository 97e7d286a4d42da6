//! The run loop's side of remote execution (SPEC §11): which ready tasks go to the cluster,
//! how many are in flight, and what happens once the cluster is judged unreachable.
//!
//! A remote action holds no global slot (`-j` stays the local limit) but does hold its
//! named pools' slots; up to `[execution] jobs` actions are in flight. When one task's
//! action keeps failing for the cluster's reasons, the cluster is judged down for the rest
//! of the run: with `fallback_local` that task and every later remote task run here (one
//! warning), otherwise they fail saying the cluster is unreachable.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{OnceCell, watch};

use super::Loop;
use super::state::{Held, Stage};
use crate::events::Event;
use crate::model::{GrpcUrl, Pipeline};
use crate::plan::Plan;
use crate::plan::placement::Placements;
use crate::reapi::{Client, ClientOptions, ReapiError};

/// What remote jobs share: the executor's address, one lazily made connection, and whether
/// the cluster has been judged down.
pub(crate) struct Executor {
    url: GrpcUrl,
    client: OnceCell<Client>,
    /// True once the loop judged the cluster down: in-flight actions are abandoned.
    pub down: watch::Receiver<bool>,
    /// `--force`: an ActionCache result is not taken either.
    pub force: bool,
}

impl Executor {
    /// The connection, made on first use. The metadata's secrets are read here and only
    /// here; a failed connection is not remembered (the next call tries again).
    pub async fn client(&self, pipeline: &Pipeline) -> Result<&Client, ReapiError> {
        self.client
            .get_or_try_init(|| async {
                let exec = &pipeline.execution;
                let mut headers = Vec::with_capacity(exec.headers.len());
                for (name, value) in &exec.headers {
                    let value = value.expose().map_err(|e| {
                        ReapiError::Config(format!("[execution] headers.{name}: {e}"))
                    })?;
                    headers.push((name.clone(), value));
                }
                let options = ClientOptions {
                    instance: exec.instance.clone(),
                    headers,
                    open_streams: Some(exec.streams as usize),
                    ..ClientOptions::default()
                };
                Client::connect(self.url.as_str(), &options).await
            })
            .await
    }

    /// Whether the loop has judged the cluster down.
    pub fn is_down(&self) -> bool {
        *self.down.borrow()
    }
}

/// The loop's remote state.
pub(super) struct Remote {
    placements: Placements,
    /// Remote actions in flight at most.
    limit: usize,
    in_flight: usize,
    /// Ready tasks bound for the cluster.
    ready: VecDeque<usize>,
    down_tx: watch::Sender<bool>,
    down: bool,
    fallback: bool,
    url: String,
}

/// The remote halves for a run of `plan`: none unless some selected task is placed remote.
pub(super) fn setup(
    plan: &Plan,
    placements: Option<Placements>,
    concurrency: usize,
    force: bool,
) -> Option<(Arc<Executor>, Remote)> {
    let placements = placements?;
    let exec = &plan.pipeline.execution;
    let url = exec.remote.clone()?;
    if !plan.order.iter().any(|&i| placements.is_remote(i)) {
        return None;
    }
    let (down_tx, down) = watch::channel(false);
    let shared = Executor {
        url: url.clone(),
        client: OnceCell::new(),
        down,
        force,
    };
    let remote = Remote {
        placements,
        limit: exec.jobs_for(concurrency).max(1),
        in_flight: 0,
        ready: VecDeque::new(),
        down_tx,
        down: false,
        fallback: exec.fallback_local,
        url: url.to_string(),
    };
    Some((Arc::new(shared), remote))
}

impl Loop<'_> {
    /// Whether task `i` goes to the cluster now (placed there, and the cluster not judged
    /// down; without `fallback_local` it still "goes", to fail there).
    pub(super) fn runs_remote(&self, i: usize) -> bool {
        self.remote
            .as_ref()
            .is_some_and(|r| r.placements.is_remote(i) && (!r.down || !r.fallback))
    }

    /// Queues a ready task for a local slot or for the cluster; `front` for retries.
    pub(super) fn enqueue(&mut self, i: usize, front: bool) {
        let remote = self.runs_remote(i);
        let queue = match self.remote.as_mut() {
            Some(r) if remote => &mut r.ready,
            _ => &mut self.ready,
        };
        if front {
            queue.push_front(i);
        } else {
            queue.push_back(i);
        }
    }

    /// Starts ready remote tasks while actions may be in flight and their pools are free.
    pub(super) fn dispatch_remote(&mut self) {
        let mut idx = 0;
        loop {
            let Some(r) = self.remote.as_mut() else {
                return;
            };
            if self.stopping || idx >= r.ready.len() || r.in_flight >= r.limit {
                return;
            }
            let i = r.ready[idx];
            if self.recs[i].stage != Stage::Ready {
                r.ready.remove(idx);
                continue;
            }
            if r.down {
                // No fallback (else the task would not be in this queue): it fails here.
                r.ready.remove(idx);
                let why = format!(
                    "the remote executor {} is unreachable (fallback_local = false)",
                    r.url
                );
                self.fail(i, why);
                continue;
            }
            if !self.slots.try_take_pools(&self.recs[i].need) {
                idx += 1;
                continue;
            }
            r.ready.remove(idx);
            r.in_flight += 1;
            self.start_remote_job(i);
        }
    }

    fn start_remote_job(&mut self, i: usize) {
        let job = self.begin_job(i, Held::Remote);
        tokio::spawn(super::remote_job::run(self.shared.clone(), job));
    }

    /// Task `i`'s job ended: the slots it held (here, or for its remote action) are free.
    pub(super) fn release_slots(&mut self, i: usize) {
        match std::mem::replace(&mut self.recs[i].held, Held::Nothing) {
            Held::Nothing => {}
            Held::Slots => self.slots.release(&self.recs[i].need),
            Held::Remote => {
                self.slots.release_pools(&self.recs[i].need);
                self.release_remote();
            }
        }
    }

    /// A remote job ended: its action is no longer in flight.
    pub(super) fn release_remote(&mut self) {
        if let Some(r) = self.remote.as_mut() {
            r.in_flight = r.in_flight.saturating_sub(1);
        }
    }

    /// The cluster stayed unreachable for `task`: judge it down, then run the task here (a
    /// warning, once) or fail it.
    pub(super) fn on_remote_unreachable(
        &mut self,
        task: usize,
        key: Option<String>,
        error: String,
    ) {
        let Some(r) = self.remote.as_mut() else {
            return self.fail(task, error);
        };
        if !std::mem::replace(&mut r.down, true) {
            let _ = r.down_tx.send(true);
            if r.fallback {
                self.sink.event(&Event::Warning {
                    message: format!(
                        "the remote executor {} is unreachable ({error}); the remaining remote tasks run here",
                        r.url
                    ),
                });
            }
        }
        if !r.fallback {
            let why = format!("the remote executor {} is unreachable: {error}", r.url);
            // It never reached the cluster: it ran nowhere.
            if self.recs[task].attempts.is_empty() {
                self.recs[task].executed_on = None;
            }
            return self.fail(task, why);
        }
        let waiting: Vec<usize> = r.ready.drain(..).collect();
        self.ready.extend(waiting);
        let rec = &mut self.recs[task];
        rec.key = key;
        rec.looked_up = true;
        rec.stage = Stage::Ready;
        // It started already: it goes first, as a retry does.
        self.ready.push_front(task);
    }
}
