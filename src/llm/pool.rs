//! The threads that share generation's matrix products and attention: a persistent pool whose
//! workers spin for a while after each job before they sleep.
//!
//! Generating one token runs a few hundred short parallel steps (seven matmuls and an attention
//! per layer, each well under a millisecond on the 3B) with small serial operations in
//! between. On rayon every step handed its halves out through work stealing, and the idle
//! worker had usually gone to sleep in the gap: `perf stat` counted about 157 context switches
//! per generated token at two threads, and each wake-up left one core idle while the other
//! started alone. Here a job is published with one atomic store, the workers are already
//! spinning on it, and after [`SPIN`] without work they park, so an idle appliance does not
//! burn its cores. The idea is ggml's thread pool (its workers poll for the next graph node);
//! the code is wick's own.
//!
//! Each thread owns a contiguous range of a job's tasks and takes them from the front; one
//! that runs out takes the others' from the back. Weight rows are tasks, so each core streams
//! its own stretch of memory. Handing tasks out from one shared counter instead interleaved
//! the two cores' rows 32 at a time, and SmolLM2's generation at two threads fell from about
//! 165 to 124 tokens/s: each core's prefetchers fetched rows the other one was reading.
//!
//! The appliance speaks while it generates: the voice synthesises one sentence while the next
//! is written. Spinning threads at the voice's priority slowed that: on SmolLM2 at two
//! threads, from the first token to the first sound went from about 0.19 to 0.35 s. So a
//! thread that waits yields its core after a short spin ([`pause`]), and the generation
//! threads run at a lower priority ([`lower_priority`], nice 10): while nothing else runs they
//! have the cores to themselves, and the voice never waits on text that is ahead of it
//! anyway. With both, that latency was as before (medians 0.195 and 0.197 s, 6 paired runs).
//!
//! Only one job runs at a time. A caller that finds the pool busy (two models in one process,
//! as the tests run them, or a task that itself asks for the pool) runs its tasks on its own
//! thread: slower, never blocked.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::cpu_kernels::SharedOut;

/// How long a worker waits for the next job before it parks (spinning, then yielding its core
/// to anything else runnable: [`pause`]). Between two steps of a token the gaps are tens of
/// microseconds; between tokens, the sampling and the pipeline's hand-off. Two milliseconds
/// covers both, and costs that much of an otherwise idle core after generation ends.
const SPIN: Duration = Duration::from_millis(2);

/// A thread's range of tasks is one word: the job's number, then the first and the end of
/// the range, in fields of these widths from the top; a job has fewer than [`MAX_TASKS`] tasks.
const INDEX_BITS: u32 = 20;
const JOB_SHIFT: u32 = 2 * INDEX_BITS;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
pub const MAX_TASKS: usize = 1 << INDEX_BITS;

type Task<'a> = dyn Fn(usize) + Sync + 'a;

/// One thread's range, alone on its cache lines (two: the adjacent-line prefetcher pairs them).
#[repr(align(128))]
struct Range(AtomicU64);

struct Shared {
    /// The number of the job being run; a new one tells the workers to start.
    job: AtomicU64,
    /// `job | first | end` per thread. Every claim is a compare-and-swap on the whole word,
    /// so a worker late from an earlier job can never take a task of the next one.
    ranges: Box<[Range]>,
    /// The current job's body; written before `job` publishes it, and read only by a thread
    /// that has claimed one of its tasks (the caller is still waiting then, so the body is
    /// alive).
    body: AtomicPtr<&'static Task<'static>>,
    /// Tasks of the current job finished (or panicked).
    done: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Workers parked on `wake`; the caller takes the lock to wake them only when this is not 0.
    parked: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
}

pub struct Pool {
    shared: Arc<Shared>,
    /// Held by the caller for the duration of one job.
    dispatch: Mutex<()>,
}

impl Pool {
    /// A pool of `threads` including the caller's (so `threads - 1` workers).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            job: AtomicU64::new(0),
            ranges: (0..threads).map(|_| Range(AtomicU64::new(0))).collect(),
            body: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            panic: Mutex::new(None),
            parked: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        for me in 1..threads {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("wick-llm-{me}"))
                .spawn(move || {
                    lower_priority();
                    work(&shared, me)
                })
                .expect("cannot start the language model's worker threads");
        }
        Pool { shared, dispatch: Mutex::new(()) }
    }

    /// The process's pool, sized like rayon's (`RAYON_NUM_THREADS`, which `--threads` sets,
    /// or every core) at its first use.
    pub fn global() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool::new(candle_core::utils::get_num_threads()))
    }

    /// Runs `task(i)` for every `i` in `0..tasks`, on the caller's thread and the workers, and
    /// returns when all have finished. A task's panic is raised here once all have finished.
    pub fn run(&self, tasks: usize, task: impl Fn(usize) + Sync) {
        assert!(tasks < MAX_TASKS, "{tasks} tasks are more than the pool's {MAX_TASKS}");
        let s = &*self.shared;
        let threads = s.ranges.len();
        let guard = if threads > 1 && tasks > 1 { self.dispatch.try_lock().ok() } else { None };
        let Some(_guard) = guard else {
            return (0..tasks).for_each(task);
        };
        let task: &Task<'_> = &task;
        // SAFETY: the workers reach the body only through a task they claimed, and this
        // function returns only after every task has finished, so the borrow outlives its uses.
        let task: &'static Task<'static> = unsafe { std::mem::transmute(task) };
        let body = &task as *const &Task<'static> as *mut &'static Task<'static>;
        s.body.store(body, Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        let job = (s.job.load(Ordering::Relaxed) + 1) & (u64::MAX >> JOB_SHIFT);
        for (t, range) in s.ranges.iter().enumerate() {
            let (first, end) = (tasks * t / threads, tasks * (t + 1) / threads);
            range.0.store(job << JOB_SHIFT | (first as u64) << INDEX_BITS | end as u64, Ordering::Relaxed);
        }
        s.job.store(job, Ordering::SeqCst);
        if s.parked.load(Ordering::SeqCst) > 0 {
            let _lock = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        run_tasks(s, job, 0);
        let mut waits = 0u32;
        while s.done.load(Ordering::Acquire) < tasks {
            pause(&mut waits);
        }
        // Nothing refers to the body any more; clear it so that a stale pointer is never seen.
        s.body.store(std::ptr::null_mut(), Ordering::Relaxed);
        if let Some(payload) = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(payload);
        }
    }

    /// `task(i, chunk)` for consecutive chunks of `chunk` elements of `out` (the last may be
    /// shorter), in parallel.
    pub fn for_each_chunk_mut(&self, out: &mut [f32], chunk: usize, task: impl Fn(usize, &mut [f32]) + Sync) {
        self.for_each_chunk_of_each(&mut [out], chunk, |_, i, part| task(i, part));
    }

    /// `task(o, i, chunk)` for consecutive chunks of `chunk` elements of each `outs[o]` (the
    /// last of each may be shorter), all in one job: several outputs' work for one hand-out.
    pub fn for_each_chunk_of_each(
        &self,
        outs: &mut [&mut [f32]],
        chunk: usize,
        task: impl Fn(usize, usize, &mut [f32]) + Sync,
    ) {
        let chunk = chunk.max(1);
        let lens: Vec<usize> = outs.iter().map(|o| o.len()).collect();
        let bases: Vec<SharedOut> = outs.iter_mut().map(|o| SharedOut::new(o)).collect();
        self.run(lens.iter().map(|l| l.div_ceil(chunk)).sum(), |mut i| {
            let mut o = 0;
            while i >= lens[o].div_ceil(chunk) {
                i -= lens[o].div_ceil(chunk);
                o += 1;
            }
            let start = i * chunk;
            let end = (start + chunk).min(lens[o]);
            // SAFETY: the chunks are disjoint and within their output, which is borrowed mutably
            // for the whole call; each index is run exactly once.
            let part = unsafe { std::slice::from_raw_parts_mut(bases[o].at(start), end - start) };
            task(o, i, part)
        });
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        let _lock = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        s.wake.notify_all();
    }
}

/// One step of a wait: a spin-loop hint at first, then a yield of the core. The appliance runs
/// the voice beside generation; a waiting thread that kept its core could hold it for a whole
/// time slice from the thread it waits for, or from the voice's.
fn pause(waits: &mut u32) {
    *waits = waits.wrapping_add(1);
    if *waits < 256 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Lowers the calling thread's priority below the voice's (see the module's doc): nice 10,
/// which needs no privilege. Where the call fails the priority stays as it was, which is only
/// slower.
pub fn lower_priority() {
    // SAFETY: plain system calls on the calling thread; a failure leaves the priority as it was.
    unsafe {
        let tid = nix::libc::gettid();
        nix::libc::setpriority(nix::libc::PRIO_PROCESS, tid as nix::libc::id_t, 10);
    }
}

/// Runs thread `me`'s tasks of `job` from the front of its range, then the other threads'
/// from the back of theirs, until none are left; then counts them as done, all at once. A
/// count per task put every thread's write on the same cache line once per task, and the
/// caller's wait read it: the line went back and forth between the cores about 28,000 times a
/// token on the 3B (`run_tasks` itself took 3.5-3.9 % of each generation thread's time).
/// Counting at the end is as safe: the caller waits for the count, so it still returns only
/// after every task, and no job ends while a thread holds tasks it has not counted.
fn run_tasks(s: &Shared, job: u64, me: usize) {
    let ran = claim_and_run(s, job, me);
    if ran > 0 {
        s.done.fetch_add(ran, Ordering::Release);
    }
}

/// [`run_tasks`]'s claims; returns how many tasks this thread ran.
fn claim_and_run(s: &Shared, job: u64, me: usize) -> usize {
    let mut ran = 0;
    let threads = s.ranges.len();
    for victim in (0..threads).map(|k| (me + k) % threads) {
        let own = victim == me;
        let range = &s.ranges[victim].0;
        let mut word = range.load(Ordering::Acquire);
        loop {
            let (first, end) = ((word >> INDEX_BITS) & INDEX_MASK, word & INDEX_MASK);
            if word >> JOB_SHIFT != job {
                // The job is over (its ranges are being refilled for the next).
                return ran;
            }
            if first >= end {
                break;
            }
            let (claimed, index) = if own { (word + (1 << INDEX_BITS), first) } else { (word - 1, end - 1) };
            match range.compare_exchange_weak(word, claimed, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    // SAFETY: this task of the job is claimed and not done, so the caller is
                    // waiting and the body it published before the job is alive.
                    let body = unsafe { *s.body.load(Ordering::Relaxed) };
                    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| body(index as usize))) {
                        s.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(payload);
                    }
                    ran += 1;
                    word = range.load(Ordering::Acquire);
                }
                Err(now) => word = now,
            }
        }
    }
    ran
}

/// Worker `me`: waits for each new job (spinning, then parked), and helps with its tasks.
fn work(s: &Shared, me: usize) {
    // Job 0 is the pool's state before its first job; a worker that starts after that job was
    // published must still take part in it.
    let mut seen = 0;
    loop {
        let since = Instant::now();
        let mut spins = 0u32;
        let job = loop {
            let job = s.job.load(Ordering::Acquire);
            if job != seen {
                break job;
            }
            if s.stop.load(Ordering::Relaxed) {
                return;
            }
            if spins % 64 == 63 && since.elapsed() > SPIN {
                let mut lock = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.parked.fetch_add(1, Ordering::SeqCst);
                while s.job.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
                    lock = s.wake.wait(lock).unwrap_or_else(|e| e.into_inner());
                }
                s.parked.fetch_sub(1, Ordering::SeqCst);
                drop(lock);
                spins = 0;
                continue;
            }
            pause(&mut spins);
        };
        seen = job;
        run_tasks(s, job, me);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_in_many_jobs() {
        let pool = Pool::new(3);
        for tasks in [0, 1, 2, 7, 100, 1000] {
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            pool.run(tasks, |i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{tasks} tasks");
        }
    }

    #[test]
    fn chunks_cover_the_slice_once() {
        let pool = Pool::new(2);
        let mut out = vec![0.0f32; 1001];
        pool.for_each_chunk_mut(&mut out, 32, |i, part| {
            for (j, v) in part.iter_mut().enumerate() {
                *v += (i * 32 + j) as f32 + 1.0;
            }
        });
        assert!(out.iter().enumerate().all(|(j, &v)| v == j as f32 + 1.0));

        // Several outputs of uneven lengths (and an empty one) in one job.
        let mut outs = [vec![0.0f32; 70], vec![], vec![0.0f32; 16], vec![0.0f32; 45]];
        let mut slices: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
        pool.for_each_chunk_of_each(&mut slices, 32, |o, i, part| {
            for (j, v) in part.iter_mut().enumerate() {
                *v += (o * 1000 + i * 32 + j) as f32 + 1.0;
            }
        });
        for (o, out) in outs.iter().enumerate() {
            assert!(out.iter().enumerate().all(|(j, &v)| v == (o * 1000 + j) as f32 + 1.0), "output {o}");
        }
    }

    /// Runs two tasks, the caller's waiting (up to 20 s) for the worker's, and returns what the
    /// worker's task saw: the caller's own task comes first in its range, so it can only finish
    /// once a worker has taken the other one.
    fn on_the_worker<T: Send>(pool: &Pool, look: impl Fn() -> T + Sync) -> T {
        let caller = std::thread::current().id();
        let seen = Mutex::new(None);
        pool.run(2, |_| {
            if std::thread::current().id() == caller {
                let since = Instant::now();
                while seen.lock().unwrap().is_none() {
                    assert!(since.elapsed() < Duration::from_secs(20), "no worker took a task in 20 s");
                    std::thread::sleep(Duration::from_millis(1));
                }
            } else {
                *seen.lock().unwrap() = Some(look());
            }
        });
        seen.into_inner().unwrap().expect("the worker's task ran")
    }

    #[test]
    fn workers_wake_after_parking() {
        let pool = Pool::new(2);
        std::thread::sleep(SPIN * 3);
        on_the_worker(&pool, || ());
        // And once more, after it has parked again.
        std::thread::sleep(SPIN * 3);
        on_the_worker(&pool, || ());
    }

    #[test]
    fn workers_run_below_the_callers_priority() {
        let pool = Pool::new(2);
        // SAFETY: getpriority reads the calling thread's niceness.
        let niceness = || unsafe { nix::libc::getpriority(nix::libc::PRIO_PROCESS, 0) };
        let caller = niceness();
        assert_eq!(on_the_worker(&pool, niceness), (caller + 10).min(19));
    }

    #[test]
    fn a_busy_pool_runs_a_second_caller_on_its_own_thread() {
        let pool = Pool::new(2);
        let inner = AtomicUsize::new(0);
        pool.run(4, |_| {
            pool.run(3, |_| {
                inner.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(inner.load(Ordering::Relaxed), 12);
    }

    #[test]
    fn a_tasks_panic_reaches_the_caller_and_the_pool_goes_on() {
        let pool = Pool::new(2);
        let caught = catch_unwind(AssertUnwindSafe(|| pool.run(8, |i| assert_ne!(i, 5, "task five"))));
        assert!(caught.is_err());
        let count = AtomicUsize::new(0);
        pool.run(8, |_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 8);
    }
}
