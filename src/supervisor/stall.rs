//! Stalled executors: the two speeds.
//!
//! An executor's heartbeat moves every tick (100 ms) from its own timer task, so it stops
//! only when something blocks the executor's thread (a request that merely awaits, however
//! long, is not a stall). When the heartbeat is late by `--stall-detect`:
//!
//! 1. routing reacts at once: the reuseport group is steered away from the slot's socket,
//!    and connections already queued on it are accepted here and handed to healthy
//!    executors (a blocked executor accepts nothing: it waits for readiness in user space);
//! 2. replacement waits for `--timeout`: a fresh executor takes over the slot's socket, and
//!    the stuck thread is abandoned (a thread cannot be killed safely). Its connections are
//!    closed when it wakes, if it ever does. More than `--max-stuck` abandoned threads at
//!    once ends the process with an error, so the service manager restarts it.
//!
//! If the heartbeat moves again before `--timeout`, the slot simply takes connections again.

use std::time::Instant;

use super::{steer, Supervisor};
use crate::server::ServerError;
use crate::state::ExecutorStats;

impl Supervisor {
    pub(super) fn watch_stalls(&mut self) -> Result<(), ServerError> {
        self.tick_heartbeats();
        let now = Instant::now();
        let mut changed = false;
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            let Some(current) = &slot.current else { continue };
            let late = now.duration_since(slot.beat_at);
            if late < self.config.stall_detect {
                if slot.stalled {
                    slot.stalled = false;
                    changed = true;
                    tracing::info!(executor = i, "executor recovered; it takes new connections again");
                }
                continue;
            }
            if !slot.stalled {
                slot.stalled = true;
                self.state.count_stall();
                changed = true;
                let tid = ExecutorStats::get(&current.stats.tid);
                tracing::warn!(
                    executor = i,
                    thread = %format!("percore-{i}"),
                    tid,
                    stuck_in = %where_stuck(tid),
                    late_ms = late.as_millis() as u64,
                    open = ExecutorStats::get(&current.stats.connections_open),
                    "executor stalled: its thread is blocked (a handler doing blocking work?); \
                     steering new connections away. Inspect it with `eu-stack -p <pid>` or `gdb -p <pid>`"
                );
            }
            if late >= self.config.timeout {
                changed |= self.replace_stuck(i);
            }
        }
        if changed {
            self.steer();
        }
        self.rescue_queued();
        let state = &self.state;
        self.abandoned.retain(|a| {
            let finished = a.thread.is_finished();
            if finished {
                state.retire(&a.stats);
            }
            !finished
        });
        if self.abandoned.len() > self.config.max_stuck {
            tracing::error!(
                stuck = self.abandoned.len(),
                max_stuck = self.config.max_stuck,
                "too many executors are stuck; exiting so the service manager restarts the process"
            );
            return Err(ServerError::Stuck { executors: self.abandoned.len() });
        }
        Ok(())
    }

    /// `--timeout` passed: a fresh executor takes over slot `i`; the stuck one is abandoned.
    fn replace_stuck(&mut self, i: usize) -> bool {
        let Ok((instance, _)) = self.spawn_instance(i).inspect_err(|reason| {
            tracing::error!(executor = i, reason, "cannot start an executor to replace a stuck one");
        }) else {
            return false;
        };
        self.state.count_restart();
        if let Some(stuck) = self.slots[i].current.take() {
            let open = ExecutorStats::get(&stuck.stats.connections_open);
            // When (if) it wakes, it closes its connections and exits.
            stuck.stats.request_stop();
            tracing::error!(
                executor = i,
                timeout_s = self.config.timeout.as_secs_f64(),
                open,
                "executor stuck past --timeout: replaced; its thread is abandoned and its connections \
                 close when it wakes"
            );
            self.abandoned.push(stuck);
        }
        self.install(i, instance);
        true
    }

    /// Point the reuseport group at the healthy slots.
    pub(super) fn steer(&self) {
        if !self.steerable {
            return;
        }
        let healthy: Vec<usize> = (0..self.slots.len()).filter(|&i| !self.slots[i].stalled).collect();
        // Each bound address is a reuseport group of its own, one socket per slot.
        let Some(first) = self.slots.first() else { return };
        for any in &first.listeners {
            if let Err(e) = steer::steer(any, &healthy, self.slots.len()) {
                tracing::warn!(error = %e, "cannot steer connections away from stalled executors");
            }
        }
    }

    /// Accept what is queued on stalled slots' sockets and hand it to healthy executors.
    fn rescue_queued(&mut self) {
        if !self.steerable {
            // One socket shared by every executor: the healthy ones already take its queue.
            return;
        }
        let healthy: Vec<usize> = (0..self.slots.len())
            .filter(|&i| !self.slots[i].stalled && self.slots[i].current.is_some())
            .collect();
        if healthy.is_empty() {
            return;
        }
        for i in 0..self.slots.len() {
            if !self.slots[i].stalled {
                continue;
            }
            for listener in &self.slots[i].listeners {
                while let Ok((stream, _)) = listener.accept() {
                    let target = healthy[self.handoff_next % healthy.len()];
                    self.handoff_next = self.handoff_next.wrapping_add(1);
                    if let Some(c) = &self.slots[target].current {
                        c.stats.hand_off(stream);
                    }
                }
            }
        }
    }
}

/// Where a thread is, as far as /proc tells without stopping it: its scheduler state, the
/// kernel function it sleeps in, and the system call it is in. Enough to tell a handler
/// that sleeps or waits on a lock (futex) from one spinning on the CPU.
fn where_stuck(tid: u64) -> String {
    let task = format!("/proc/self/task/{tid}");
    let read = |f: &str| std::fs::read_to_string(format!("{task}/{f}")).unwrap_or_default();
    let stat = read("stat");
    // The state follows the parenthesised command name.
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).unwrap_or('?');
    let state = match state {
        'R' => "running (busy in user space or on the CPU)",
        'S' => "sleeping",
        'D' => "in uninterruptible IO",
        'T' | 't' => "stopped",
        _ => "unknown",
    };
    let wchan = read("wchan");
    let syscall = read("syscall");
    let call = match syscall.split_whitespace().next() {
        Some("running") => "none (running)".to_string(),
        Some(n) => syscall_name(n.parse().unwrap_or(-1)).map_or_else(|| format!("#{n}"), str::to_string),
        None => "unknown".to_string(),
    };
    let wchan = if wchan.is_empty() || wchan == "0" { "-" } else { wchan.trim() };
    format!("state={state}, syscall={call}, kernel wait={wchan}")
}

/// Names of the system calls a blocked handler is most likely in.
fn syscall_name(n: i64) -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    let table: &[(i64, &str)] = &[
        (0, "read"),
        (1, "write"),
        (7, "poll"),
        (23, "select"),
        (35, "nanosleep"),
        (42, "connect"),
        (44, "sendto"),
        (45, "recvfrom"),
        (202, "futex"),
        (230, "clock_nanosleep"),
        (232, "epoll_wait"),
        (270, "pselect6"),
        (271, "ppoll"),
        (281, "epoll_pwait"),
        (426, "io_uring_enter"),
    ];
    #[cfg(not(target_arch = "x86_64"))]
    let table: &[(i64, &str)] = &[];
    table.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}
