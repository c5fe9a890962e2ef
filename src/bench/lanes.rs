//! Guests ("lanes") taking jobs from one shared queue until it is empty,
//! each on its own thread; what they do comes back as [`LaneMsg`]s to the
//! thread that started them.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;

use anyhow::Result;

use crate::image::BuiltImage;
use crate::measure;
use crate::vm::{Vm, VmOptions};

use super::job::Job;
use super::phase::{run_job, JobOutcome, Phase};

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
    pub queue: &'a Mutex<VecDeque<Job>>,
    pub phases: &'a [Box<dyn Phase>],
}

impl Lanes<'_> {
    /// Run `guests` lanes until the queue is empty, handing every message
    /// to `handle` on the calling thread in arrival order. An error from
    /// `handle` is returned once the lanes have stopped, which they do
    /// after their current job.
    pub fn run(&self, guests: usize, mut handle: impl FnMut(LaneMsg) -> Result<()>) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| {
            for lane in 0..guests {
                let tx = tx.clone();
                scope.spawn(move || self.lane(lane, &tx));
            }
            // Only the lanes hold senders now: the loop ends when all are
            // done, and leaving it early tells them to stop.
            drop(tx);
            for msg in rx {
                handle(msg)?;
            }
            Ok(())
        })
    }

    /// One guest taking jobs from the shared queue until it is empty.
    /// Every job starts from a reset guest (the control plane resets).
    fn lane(&self, lane: usize, tx: &Sender<LaneMsg>) {
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
        loop {
            let next = self.queue.lock().expect("queue lock").pop_front();
            let Some(job) = next else { break };
            let started = LaneMsg::Started {
                lane,
                job: job.clone(),
            };
            if tx.send(started).is_err() {
                break;
            }
            let outcome = run_job(&mut vm, &job, self.phases);
            if tx.send(LaneMsg::Done { lane, job, outcome }).is_err() {
                break;
            }
        }
        if let Err(e) = vm.shutdown() {
            fail(format!("shutting the guest down: {e}"));
        }
    }
}
