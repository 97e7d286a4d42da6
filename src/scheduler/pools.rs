//! Concurrency slots: the global limit plus the named `[pools]`, owned by the run loop.
//!
//! A task starts only when every slot it needs is free, and takes them all at once; since
//! the loop is the only one taking or returning slots, overlapping pools cannot deadlock
//! (no task ever holds some slots while waiting for others).

use std::collections::BTreeMap;

/// What one task needs: 1 global slot plus `(pool index, slots)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Need {
    pools: Vec<(usize, u32)>,
}

/// Free slot counters.
#[derive(Debug, Clone)]
pub struct Slots {
    global_free: usize,
    names: Vec<String>,
    free: Vec<u32>,
}

impl Slots {
    /// `global` running tasks at most; each pool its declared size.
    pub fn new(global: usize, pools: &BTreeMap<String, u32>) -> Self {
        Self {
            global_free: global.max(1),
            names: pools.keys().cloned().collect(),
            free: pools.values().copied().collect(),
        }
    }

    /// Translates a task's `uses` into a [`Need`] (unknown pools were rejected at load time
    /// and are ignored here).
    pub fn need(&self, uses: &BTreeMap<String, u32>) -> Need {
        Need {
            pools: uses
                .iter()
                .filter_map(|(name, n)| self.names.iter().position(|p| p == name).map(|i| (i, *n)))
                .collect(),
        }
    }

    /// Takes every slot of `need` when all are free; takes nothing otherwise.
    pub fn try_take(&mut self, need: &Need) -> bool {
        if self.global_free == 0 || need.pools.iter().any(|&(i, n)| self.free[i] < n) {
            return false;
        }
        self.global_free -= 1;
        for &(i, n) in &need.pools {
            self.free[i] -= n;
        }
        true
    }

    /// Returns the slots of `need`.
    pub fn release(&mut self, need: &Need) {
        self.global_free += 1;
        for &(i, n) in &need.pools {
            self.free[i] += n;
        }
    }

    /// Takes the pool slots of `need` (no global slot: a remote action, SPEC §11) when all
    /// are free; takes nothing otherwise.
    pub fn try_take_pools(&mut self, need: &Need) -> bool {
        if need.pools.iter().any(|&(i, n)| self.free[i] < n) {
            return false;
        }
        for &(i, n) in &need.pools {
            self.free[i] -= n;
        }
        true
    }

    /// Returns the pool slots of `need` (see [`Slots::try_take_pools`]).
    pub fn release_pools(&mut self, need: &Need) {
        for &(i, n) in &need.pools {
            self.free[i] += n;
        }
    }

    /// Whether no global slot is free (then no ready task can start).
    pub fn saturated(&self) -> bool {
        self.global_free == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_or_nothing() {
        let pools = BTreeMap::from([("net".to_string(), 2), ("db".to_string(), 1)]);
        let mut s = Slots::new(3, &pools);
        let both = s.need(&BTreeMap::from([
            ("net".to_string(), 1),
            ("db".to_string(), 1),
        ]));
        let net2 = s.need(&BTreeMap::from([("net".to_string(), 2)]));
        assert!(s.try_take(&both));
        assert!(!s.try_take(&net2), "net has one slot left");
        assert!(!s.try_take(&both), "db is busy");
        s.release(&both);
        assert!(s.try_take(&net2));
        assert!(s.try_take(&Need::default()));
        assert!(!s.saturated());
        assert!(s.try_take(&Need::default()));
        assert!(s.saturated());
        // A remote action takes only its pools, even with every global slot taken.
        s.release(&net2);
        assert!(s.try_take_pools(&net2));
        assert!(!s.try_take_pools(&net2), "net is full");
        assert!(s.try_take_pools(&Need::default()));
        s.release_pools(&net2);
        assert!(s.try_take_pools(&net2));
    }
}
