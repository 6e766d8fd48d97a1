//! Switching the kernel's cgroup filter (the ids in `CGROUP_FILTER` and the
//! config's mode) and the rest of the live config from one setting to
//! another, so that no moment of the switch streams a process that neither
//! the old nor the new setting streams, and a failure puts the old one back.
//!
//! The kernel reads the mode from the config and the ids from the map, each
//! on its own, so the order of the writes decides what it sees meanwhile:
//! - same mode: the new ids are added, then the config written, then the
//!   stale ids removed (watching, the union is watched meanwhile; ignoring,
//!   the union is ignored);
//! - from off: the ids are written (unused), then the config;
//! - to off: the config is written, then the ids removed;
//! - watch to ignore, or back (or more ids than the map holds at once): no
//!   order of the two would do (the map would hold the new list under the old
//!   mode: the inverted filter), so the kernel is made quiet first: the
//!   config's `CONFIG_TRACKED_ONLY` streams only the processes of the
//!   `TRACKED` map, which `serve` leaves empty. Then the ids are rewritten, the
//!   new config written still quiet, and last only the quiet flag cleared.
//!   Anomalies of those few microseconds (a few per map entry) are not
//!   streamed; they are counted in the exact metrics and as `filtered`.
//!
//! A config write may be seen half done by a kernel program that reads it
//! meanwhile; every step above changes at most one of the two fields that
//! decide the filter (the mode, the quiet flag), so no half is inverted either.

use std::collections::BTreeSet;

use exporter_common::{Config, CGROUP_FILTER_CAPACITY, CGROUP_FILTER_OFF, CONFIG_TRACKED_ONLY};

use super::{Probe, ProbeError};

/// The flag that makes the kernel stream (almost) nothing during a switch.
const QUIET: u32 = CONFIG_TRACKED_ONLY;

/// The kernel state a switch writes: the live config and the filter's ids.
pub trait FilterMaps {
    fn live_config(&self) -> Config;
    fn write_live_config(&mut self, config: Config) -> Result<(), ProbeError>;
    fn filter_ids(&self) -> Result<Vec<u64>, ProbeError>;
    fn add_filter_id(&mut self, id: u64) -> Result<(), ProbeError>;
    fn remove_filter_id(&mut self, id: u64) -> Result<(), ProbeError>;
}

impl FilterMaps for Probe {
    fn live_config(&self) -> Config {
        self.config
    }

    fn write_live_config(&mut self, config: Config) -> Result<(), ProbeError> {
        self.write_config(config)
    }

    fn filter_ids(&self) -> Result<Vec<u64>, ProbeError> {
        self.cgroups()
    }

    fn add_filter_id(&mut self, id: u64) -> Result<(), ProbeError> {
        self.add_cgroup(id)
    }

    fn remove_filter_id(&mut self, id: u64) -> Result<(), ProbeError> {
        self.remove_cgroup(id).map(|_| ())
    }
}

/// A switch that failed: why, and whether putting the old setting back failed too.
#[derive(Debug)]
pub struct SwitchError {
    pub error: Box<ProbeError>,
    pub rollback: Option<Box<ProbeError>>,
}

impl std::fmt::Display for SwitchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)?;
        if let Some(e) = &self.rollback {
            write!(f, " (and writing the previous config back failed too: {e}; the kernel's filter may be between the two)")?;
        }
        Ok(())
    }
}

impl std::error::Error for SwitchError {}

/// Makes `target` the live config and `ids` the filter's ids, in the order
/// the module describes; on a failure, the state before is put back.
pub fn switch(maps: &mut impl FilterMaps, target: Config, ids: &[u64]) -> Result<(), SwitchError> {
    let before = maps.live_config();
    let before_ids = maps.filter_ids().map_err(|error| SwitchError { error: Box::new(error), rollback: None })?;
    transition(maps, target, ids).map_err(|error| SwitchError {
        error: Box::new(error),
        rollback: transition(maps, before, &before_ids).err().map(Box::new),
    })
}

fn transition(maps: &mut impl FilterMaps, target: Config, ids: &[u64]) -> Result<(), ProbeError> {
    let current = maps.live_config();
    let have: BTreeSet<u64> = maps.filter_ids()?.into_iter().collect();
    let want: BTreeSet<u64> = ids.iter().copied().collect();
    let (from, to) = (current.cgroup_filter, target.cgroup_filter);
    let quiet = |config: Config| Config { flags: config.flags | QUIET, ..config };
    let leaving_quiet = current.flags & QUIET != 0 && target.flags & QUIET == 0;
    let inverting = from != CGROUP_FILTER_OFF && to != CGROUP_FILTER_OFF && from != to;
    let too_many = from == to && from != CGROUP_FILTER_OFF && have.union(&want).count() > CGROUP_FILTER_CAPACITY as usize;
    if inverting || too_many || leaving_quiet {
        if current.flags & QUIET == 0 {
            maps.write_live_config(quiet(current))?;
        }
        // Stale first: the map never holds more than the larger of the two lists.
        remove_stale(maps, &have, &want)?;
        add_new(maps, &have, &want)?;
        maps.write_live_config(quiet(target))?;
        return maps.write_live_config(target);
    }
    if to == CGROUP_FILTER_OFF {
        maps.write_live_config(target)?;
        remove_stale(maps, &have, &want)?;
        return add_new(maps, &have, &want);
    }
    if from == CGROUP_FILTER_OFF {
        remove_stale(maps, &have, &want)?;
        add_new(maps, &have, &want)?;
        return maps.write_live_config(target);
    }
    add_new(maps, &have, &want)?;
    maps.write_live_config(target)?;
    remove_stale(maps, &have, &want)
}

fn add_new(maps: &mut impl FilterMaps, have: &BTreeSet<u64>, want: &BTreeSet<u64>) -> Result<(), ProbeError> {
    want.difference(have).try_for_each(|&id| maps.add_filter_id(id))
}

fn remove_stale(maps: &mut impl FilterMaps, have: &BTreeSet<u64>, want: &BTreeSet<u64>) -> Result<(), ProbeError> {
    have.difference(want).try_for_each(|&id| maps.remove_filter_id(id))
}

#[cfg(test)]
mod tests {
    use exporter_common::{CGROUP_FILTER_IGNORE, CGROUP_FILTER_WATCH};

    use super::*;

    /// The kernel's state as a switch leaves it step by step, with every state
    /// a kernel program could see checked against the old and new settings.
    struct Fake {
        config: Config,
        ids: BTreeSet<u64>,
        capacity: usize,
        /// The mutating operation (counted from 0) that fails, once.
        fail_at: Option<usize>,
        ops: usize,
        /// Every state a reader may have seen: (quiet, mode, ids).
        seen: Vec<(bool, u32, BTreeSet<u64>)>,
    }

    impl Fake {
        fn new(config: Config, ids: &BTreeSet<u64>, capacity: usize) -> Fake {
            Fake { config, ids: ids.clone(), capacity, fail_at: None, ops: 0, seen: Vec::new() }
        }

        fn op(&mut self) -> Result<(), ProbeError> {
            let n = self.ops;
            self.ops += 1;
            if self.fail_at == Some(n) {
                self.fail_at = None;
                return Err(ProbeError::Io(std::io::Error::other("injected")));
            }
            Ok(())
        }

        fn state(&self) -> (bool, u32, BTreeSet<u64>) {
            (self.config.flags & QUIET != 0, self.config.cgroup_filter, self.ids.clone())
        }
    }

    impl FilterMaps for Fake {
        fn live_config(&self) -> Config {
            self.config
        }
        fn write_live_config(&mut self, config: Config) -> Result<(), ProbeError> {
            self.op()?;
            // A reader may see either field new and the other old.
            let ids = self.ids.clone();
            self.seen.push((config.flags & QUIET != 0, self.config.cgroup_filter, ids.clone()));
            self.seen.push((self.config.flags & QUIET != 0, config.cgroup_filter, ids));
            self.config = config;
            self.seen.push(self.state());
            Ok(())
        }
        fn filter_ids(&self) -> Result<Vec<u64>, ProbeError> {
            Ok(self.ids.iter().copied().collect())
        }
        fn add_filter_id(&mut self, id: u64) -> Result<(), ProbeError> {
            self.op()?;
            if !self.ids.contains(&id) && self.ids.len() >= self.capacity {
                // One failure per switch: the rollback's writes succeed.
                self.fail_at = None;
                return Err(ProbeError::Io(std::io::Error::other("map full")));
            }
            self.ids.insert(id);
            self.seen.push(self.state());
            Ok(())
        }
        fn remove_filter_id(&mut self, id: u64) -> Result<(), ProbeError> {
            self.op()?;
            self.ids.remove(&id);
            self.seen.push(self.state());
            Ok(())
        }
    }

    /// Whether a task whose cgroup and ancestors are `task` is streamed.
    fn streams((quiet, mode, ids): &(bool, u32, BTreeSet<u64>), task: &BTreeSet<u64>) -> bool {
        let listed = task.iter().any(|id| ids.contains(id));
        !quiet
            && match *mode {
                CGROUP_FILTER_WATCH => listed,
                CGROUP_FILTER_IGNORE => !listed,
                _ => true,
            }
    }

    fn subsets(of: &[u64]) -> Vec<BTreeSet<u64>> {
        (0..1u32 << of.len()).map(|bits| of.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, &id)| id).collect()).collect()
    }

    /// Every pair of settings over three cgroups (each mode, each id set),
    /// with a failure injected at each step and none: no state a reader could
    /// see streams a task that neither setting streams; a switch ends in the
    /// new setting, a failed one in the old.
    #[test]
    fn no_step_of_any_switch_streams_what_neither_setting_streams() {
        let universe = [1, 2, 3];
        let sets = subsets(&universe);
        let tasks = subsets(&universe);
        let modes = [CGROUP_FILTER_OFF, CGROUP_FILTER_WATCH, CGROUP_FILTER_IGNORE];
        let mut switches = 0;
        for capacity in [2, 3] {
            for &from in &modes {
                for old_ids in sets.iter().filter(|s| s.len() <= capacity) {
                    for &to in &modes {
                        for new_ids in &sets {
                            let old = Config { cgroup_filter: from, ..Config::DEFAULT };
                            let new = Config { cgroup_filter: to, slow_threshold_ns: 7, ..Config::DEFAULT };
                            let before = (false, from, old_ids.clone());
                            let after = (false, to, new_ids.clone());
                            for fail_at in std::iter::once(None).chain((0..12).map(Some)) {
                                let mut fake = Fake::new(old, old_ids, capacity);
                                fake.fail_at = fail_at;
                                let wanted: Vec<u64> = new_ids.iter().copied().collect();
                                let result = switch(&mut fake, new, &wanted);
                                switches += 1;
                                for state in &fake.seen {
                                    for task in &tasks {
                                        assert!(
                                            !streams(state, task) || streams(&before, task) || streams(&after, task),
                                            "{before:?} -> {after:?} (capacity {capacity}, failing at {fail_at:?}): {state:?} streams {task:?}"
                                        );
                                    }
                                }
                                match result {
                                    Ok(()) => {
                                        assert_eq!(fake.state(), after);
                                        assert_eq!(fake.config, new);
                                    }
                                    Err(e) => {
                                        assert!(e.rollback.is_none(), "{e}");
                                        assert_eq!(fake.state(), before, "a failed switch puts the old setting back");
                                        assert_eq!(fake.config, old);
                                    }
                                }
                                if new_ids.len() > capacity {
                                    assert!(fake.state() == before, "more ids than the map holds: refused, old kept");
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(switches > 1000, "{switches}");
    }
}
