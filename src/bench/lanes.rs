//! Guests ("lanes") taking jobs from one shared queue until it is empty,
//! each on its own thread; what they do comes back as [`LaneMsg`]s to the
//! thread that started them. A lane with no ready job (each waits for a
//! smaller job of its chain) sleeps until another lane finishes one.

use std::sync::mpsc::{self, Sender};
use std::sync::{Condvar, Mutex};

use anyhow::Result;

use crate::image::BuiltImage;
use crate::measure;
use crate::vm::{Vm, VmOptions};

use super::job::Job;
use super::phase::{run_job, JobOutcome, Phase};
use super::projection::Projection;
use super::schedule::{JobQueue, Next};

/// What a lane reports back.
pub enum LaneMsg {
    Started {
        lane: usize,
        job: Job,
    },
    Done {
        lane: usize,
        job: Job,
        outcome: JobOutcome,
    },
    /// Not run: its projected time exceeds the job budget.
    Skipped {
        job: Job,
        projection: Projection,
    },
    /// The guest could not start (its share goes to the others) or stop.
    Failed {
        lane: usize,
        error: String,
    },
}

/// What every lane shares.
pub struct Lanes<'a> {
    pub built: &'a BuiltImage,
    pub opts: &'a VmOptions,
    pub queue: &'a Mutex<JobQueue>,
    pub phases: &'a [Box<dyn Phase>],
}

/// Wakes lanes waiting for a job when one finishes or the run stops.
struct Signal {
    changed: Condvar,
    stopping: Mutex<bool>,
}

impl Signal {
    fn stop(&self) {
        *self.stopping.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_all();
    }
}

/// Stops the run when a lane panics: the others might wait forever for
/// the job it held.
struct StopOnPanic<'a>(&'a Signal);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop();
        }
    }
}

impl Lanes<'_> {
    /// Run `guests` lanes until the queue is empty, handing every message
    /// to `handle` on the calling thread in arrival order. An error from
    /// `handle` is returned once the lanes have stopped, which they do
    /// after their current job.
    pub fn run(&self, guests: usize, mut handle: impl FnMut(LaneMsg) -> Result<()>) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        let signal = Signal {
            changed: Condvar::new(),
            stopping: Mutex::new(false),
        };
        std::thread::scope(|scope| {
            for lane in 0..guests {
                let tx = tx.clone();
                let signal = &signal;
                scope.spawn(move || self.lane(lane, &tx, signal));
            }
            // Only the lanes hold senders now: the loop ends when all are
            // done, and leaving it early tells them to stop.
            drop(tx);
            let mut result = Ok(());
            for msg in &rx {
                if let Err(e) = handle(msg) {
                    result = Err(e);
                    break;
                }
            }
            // Lanes waiting for a job would otherwise wait forever; taking
            // the queue lock first means none is between its check and
            // its wait.
            let held = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            *signal.stopping.lock().unwrap_or_else(|e| e.into_inner()) = true;
            drop(held);
            signal.changed.notify_all();
            drop(rx);
            result
        })
    }

    /// The next job to run, reporting skips on the way; None when the
    /// queue is done or the run stops.
    fn take(&self, tx: &Sender<LaneMsg>, signal: &Signal) -> Option<Job> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if *signal.stopping.lock().unwrap_or_else(|e| e.into_inner()) {
                return None;
            }
            match queue.take_next() {
                Next::Run(job) => return Some(job),
                Next::Skip(job, projection) => {
                    // A skip frees the chain's larger jobs for every lane.
                    signal.changed.notify_all();
                    tx.send(LaneMsg::Skipped { job, projection }).ok()?;
                }
                Next::Wait => {
                    queue = signal
                        .changed
                        .wait(queue)
                        .unwrap_or_else(|e| e.into_inner());
                }
                Next::Done => return None,
            }
        }
    }

    /// One guest taking jobs from the shared queue until it is empty.
    /// Every job starts from a reset guest (the control plane resets).
    fn lane(&self, lane: usize, tx: &Sender<LaneMsg>, signal: &Signal) {
        let _stop = StopOnPanic(signal);
        let fail = |error: String| {
            let _ = tx.send(LaneMsg::Failed { lane, error });
        };
        let mut vm = match Vm::boot(self.built, self.opts) {
            Ok(vm) => vm,
            Err(e) => return fail(format!("booting the guest: {e}")),
        };
        if let Err(e) = measure::guest::prepare(&mut vm) {
            return fail(format!("building the guest topology and servers: {e}"));
        }
        while let Some(job) = self.take(tx, signal) {
            let started = LaneMsg::Started {
                lane,
                job: job.clone(),
            };
            if tx.send(started).is_err() {
                break;
            }
            let outcome = run_job(&mut vm, &job, self.phases, self.opts.memory_mb);
            self.queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .finished(&job, outcome.seconds, outcome.failure.is_some());
            signal.changed.notify_all();
            if tx.send(LaneMsg::Done { lane, job, outcome }).is_err() {
                break;
            }
        }
        if let Err(e) = vm.shutdown() {
            fail(format!("shutting the guest down: {e}"));
        }
    }
}
