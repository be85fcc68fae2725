//! The worker threads that take a share of one call: a team of `threads - 1` workers, started at
//! first use, each with a slot the caller posts a part of the work to.
//!
//! A call that splits its work hands one part to each worker and runs the first itself. Waking a
//! parked thread costs tens of microseconds on a virtual machine, as much as a whole batch of 32
//! rows of the seed model takes on one core, so a worker that has just finished a part spins for
//! [`WORKER_SPIN`] before it parks: back-to-back calls (a stream of requests, the products of a
//! training step) find it awake. The caller spins for the workers' parts the same way, then
//! yields. Idle, the team costs nothing.
//!
//! One call holds the team at a time. A call that finds it taken (another request on another
//! thread) runs all its parts itself: both cores are busy already.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a worker stays awake for the next part after finishing one.
const WORKER_SPIN: Duration = Duration::from_micros(200);

/// How long the caller spins for the workers' parts before it yields its core between checks.
const CALLER_SPIN: Duration = Duration::from_micros(500);

/// A part of a call: the call's closure (its lifetime erased: the caller waits for every part
/// before the closure goes out of scope) and the part's index.
#[derive(Clone, Copy)]
struct Job {
    work: *const (dyn Fn(usize) + Sync),
    part: usize,
}

/// What a caller and one worker share.
struct Slot {
    /// The job of the latest post; written only while the worker is idle.
    job: UnsafeCell<Option<Job>>,
    /// Incremented by the caller when it posts a job.
    posted: AtomicU64,
    /// Set to `posted` by the worker when that job is done.
    finished: AtomicU64,
    /// The worker is parked, or about to park: a post must unpark it.
    parked: AtomicBool,
    /// The last job panicked.
    panicked: AtomicBool,
}

// SAFETY: `job` is written by the caller only between the worker's `finished` store (Release)
// and the caller's next `posted` store (Release), and read by the worker only after it observes
// that `posted` (Acquire): the two never touch it at once. The closure it points to is `Sync`.
unsafe impl Sync for Slot {}
// SAFETY: as for `Sync`; the raw pointer inside is only dereferenced under that protocol.
unsafe impl Send for Slot {}

struct Worker {
    slot: Arc<Slot>,
    thread: Thread,
}

/// The process's team of workers.
pub(crate) struct Team {
    taken: AtomicBool,
    workers: Vec<Worker>,
}

/// The team, started by the first call that splits its work, with `threads - 1` workers.
fn team(threads: usize) -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| Team::start(threads.saturating_sub(1).max(1)))
}

/// Runs `work(0)`, …, `work(parts - 1)`, part 0 on the calling thread and the others on the
/// team's workers (on `threads` threads in all). Returns when every part is done; a part that
/// panicked panics the caller.
pub(crate) fn run_parts(parts: usize, threads: usize, work: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 || threads <= 1 {
        (0..parts).for_each(work);
        return;
    }
    let team = team(threads);
    if team
        .taken
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // Another call holds the team: every part runs here, and as on the team, a part that
        // panics doesn't stop the others from running first.
        run_all_then_panic(parts, work);
        return;
    }
    let helpers = (parts - 1).min(team.workers.len()).min(threads - 1);
    // SAFETY: only the lifetime is erased. From the first post on, the guard waits for every
    // posted part before this function returns or unwinds, while `work` is still borrowed.
    let erased: *const (dyn Fn(usize) + Sync + 'static) =
        unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), _>(work as *const _) };
    let mut held = Held {
        team,
        tickets: Vec::with_capacity(helpers),
    };
    for (index, worker) in team.workers[..helpers].iter().enumerate() {
        held.tickets.push(worker.post(Job {
            work: erased,
            part: index + 1,
        }));
    }
    work(0);
    // Parts beyond the team's size run here too.
    for part in helpers + 1..parts {
        work(part);
    }
    let panicked = held.wait();
    drop(held);
    if panicked {
        panic!("a part of a dense-kernel call panicked on a worker thread");
    }
}

/// Runs every part on this thread, then re-raises the first panic, if any.
fn run_all_then_panic(parts: usize, work: &(dyn Fn(usize) + Sync)) {
    let mut first_panic = None;
    for part in 0..parts {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(part))) {
            first_panic.get_or_insert(panic);
        }
    }
    if let Some(panic) = first_panic {
        std::panic::resume_unwind(panic);
    }
}

/// The team held by one call: waits for the posted parts and frees the team when dropped.
struct Held {
    team: &'static Team,
    /// One per posted part, in worker order: the `finished` value that shows it done.
    tickets: Vec<u64>,
}

impl Held {
    /// Waits for every posted part; whether one panicked.
    fn wait(&mut self) -> bool {
        let mut panicked = false;
        let started = Instant::now();
        let mut checks = 0u32;
        for (worker, &ticket) in self.team.workers.iter().zip(&self.tickets) {
            while worker.slot.finished.load(Ordering::Acquire) != ticket {
                checks = checks.wrapping_add(1);
                if checks.is_multiple_of(64) && started.elapsed() > CALLER_SPIN {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            panicked |= worker.slot.panicked.load(Ordering::Relaxed);
        }
        self.tickets.clear();
        panicked
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.tickets.is_empty() {
            self.wait();
        }
        self.team.taken.store(false, Ordering::Release);
    }
}

impl Team {
    fn start(workers: usize) -> Self {
        let workers = (0..workers)
            .map(|index| {
                let slot = Arc::new(Slot {
                    job: UnsafeCell::new(None),
                    posted: AtomicU64::new(0),
                    finished: AtomicU64::new(0),
                    parked: AtomicBool::new(false),
                    panicked: AtomicBool::new(false),
                });
                let for_worker = Arc::clone(&slot);
                let handle = std::thread::Builder::new()
                    .name(format!("maas-dense-{index}"))
                    .spawn(move || work_loop(&for_worker))
                    .expect("the dense kernels' worker threads start");
                Worker {
                    slot,
                    thread: handle.thread().clone(),
                }
            })
            .collect();
        Team {
            taken: AtomicBool::new(false),
            workers,
        }
    }
}

impl Worker {
    /// Posts `job` to this (idle) worker and wakes it if it parked; the ticket `finished` will
    /// show when the job is done.
    fn post(&self, job: Job) -> u64 {
        let slot = &self.slot;
        // SAFETY: the team is held by this call and the worker finished its previous job (every
        // call waits for its parts), so the worker doesn't read `job` until the store below.
        unsafe { *slot.job.get() = Some(job) };
        let ticket = slot.posted.load(Ordering::Relaxed) + 1;
        slot.posted.store(ticket, Ordering::SeqCst);
        // Pairs with the worker's SeqCst store of `parked` and load of `posted`: either it sees
        // this post before parking, or this load sees it parked.
        if slot.parked.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
        ticket
    }
}

/// A worker's life: wait for a post (spinning for a while, then parked), run it, repeat.
fn work_loop(slot: &Slot) {
    let mut seen = 0u64;
    loop {
        let mut idle_since = Instant::now();
        let mut checks = 0u32;
        let ticket = loop {
            let posted = slot.posted.load(Ordering::Acquire);
            if posted != seen {
                break posted;
            }
            checks = checks.wrapping_add(1);
            if !checks.is_multiple_of(64) || idle_since.elapsed() < WORKER_SPIN {
                std::hint::spin_loop();
                continue;
            }
            slot.parked.store(true, Ordering::SeqCst);
            if slot.posted.load(Ordering::SeqCst) == seen {
                std::thread::park();
            }
            slot.parked.store(false, Ordering::SeqCst);
            idle_since = Instant::now();
        };
        seen = ticket;
        // SAFETY: the post of `ticket` wrote the job before its Release store of `posted`,
        // which the Acquire load above observed; the caller doesn't write it again until it
        // sees `finished == ticket`.
        let job = unsafe { (*slot.job.get()).take() };
        let panicked = match job {
            Some(job) => catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: the caller keeps the closure alive until it sees `finished == ticket`.
                unsafe { (*job.work)(job.part) }
            }))
            .is_err(),
            None => false,
        };
        slot.panicked.store(panicked, Ordering::Relaxed);
        slot.finished.store(ticket, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn count_parts(parts: usize, threads: usize) -> Vec<usize> {
        let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
        run_parts(parts, threads, &|part| {
            hits[part].fetch_add(1, Ordering::Relaxed);
        });
        hits.into_iter().map(AtomicUsize::into_inner).collect()
    }

    #[test]
    fn every_part_runs_once_awake_parked_and_beyond_the_teams_size() {
        for _ in 0..1000 {
            assert_eq!(count_parts(2, 2), [1, 1]);
        }
        // Long enough for the worker to park: the next post must wake it.
        for _ in 0..5 {
            std::thread::sleep(WORKER_SPIN * 5);
            assert_eq!(count_parts(2, 2), [1, 1]);
        }
        assert_eq!(count_parts(5, 2), [1; 5]);
        assert_eq!(count_parts(1, 2), [1]);
        assert_eq!(count_parts(3, 1), [1; 3]);
    }

    #[test]
    fn calls_from_many_threads_at_once_each_run_every_part() {
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..500 {
                        assert_eq!(count_parts(2, 2), [1, 1]);
                    }
                });
            }
        });
    }

    #[test]
    fn a_part_that_panics_on_a_worker_panics_the_caller_and_the_team_recovers() {
        let outcome = std::panic::catch_unwind(|| {
            run_parts(2, 2, &|part| {
                if part == 1 {
                    panic!("part 1 fails");
                }
            })
        });
        assert!(outcome.is_err());
        // The caller's own part panicking still waits for the worker's part first.
        let done = AtomicUsize::new(0);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_parts(2, 2, &|part| {
                if part == 0 {
                    panic!("part 0 fails");
                }
                std::thread::sleep(Duration::from_millis(20));
                done.fetch_add(1, Ordering::SeqCst);
            })
        }));
        assert!(outcome.is_err());
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert_eq!(count_parts(2, 2), [1, 1]);
    }

    /// A call made while the team is busy (here: from inside a part) runs its parts on the
    /// calling thread, and still runs them all before a panic propagates.
    #[test]
    fn a_call_made_while_the_team_is_busy_runs_every_part_before_a_panic() {
        let done = AtomicUsize::new(0);
        run_parts(2, 2, &|outer| {
            if outer == 0 {
                let inner = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    run_parts(2, 2, &|part| {
                        if part == 0 {
                            panic!("inner part 0 fails");
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                    })
                }));
                assert!(inner.is_err());
            }
        });
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
