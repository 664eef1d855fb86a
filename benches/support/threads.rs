//! Where a process's CPU goes, by thread name: each thread's user + system time and context
//! switches, from `/proc/self/task`. A sampler thread reads them every few milliseconds, so a thread
//! that starts and ends inside the measurement (a run's clock) is still counted up to its last
//! sample.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// `/proc` reports CPU times in USER_HZ, which Linux fixes at 100 per second for this interface.
const TICKS_PER_S: f64 = 100.0;
const EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_s: f64,
    pub switches: u64,
}

/// One thread's counters as last read.
#[derive(Debug, Clone, Default)]
struct Seen {
    name: String,
    first: Usage,
    last: Usage,
}

pub struct ThreadSampler {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashMap<u32, Seen>>>,
    thread: Option<thread::JoinHandle<()>>,
}

fn read_task(tid: u32) -> Option<(String, Usage)> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    let cpu_s = (tick(11)? + tick(12)?) / TICKS_PER_S;
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    let switches = status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Some((name, Usage { cpu_s, switches }))
}

fn sample(seen: &Mutex<HashMap<u32, Seen>>, sampler: u32) {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    let tids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|t| *t != sampler)
        .collect();
    let mut seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for tid in tids {
        let Some((name, usage)) = read_task(tid) else {
            continue;
        };
        let entry = seen.entry(tid).or_insert_with(|| Seen {
            name: name.clone(),
            // A thread first seen mid-run started mid-run: all its time so far is the run's.
            first: Usage::default(),
            last: usage,
        });
        entry.name = name;
        entry.last = usage;
    }
}

fn own_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

impl ThreadSampler {
    /// Takes the first reading of every thread now, then samples until [`Self::finish`].
    pub fn start() -> ThreadSampler {
        let seen = Arc::new(Mutex::new(HashMap::new()));
        // Threads alive now count from their current figures, not from zero.
        sample(&seen, 0);
        for s in seen.lock().expect("fresh").values_mut() {
            s.first = s.last;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, seen2) = (Arc::clone(&stop), Arc::clone(&seen));
        let thread = thread::Builder::new()
            .name("bench-sampler".into())
            .spawn(move || {
                let me = own_tid();
                while !stop2.load(Ordering::Relaxed) {
                    thread::sleep(EVERY);
                    sample(&seen2, me);
                }
            })
            .expect("sampler starts");
        ThreadSampler {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns each thread name's CPU and switches since the start, largest first.
    pub fn finish(mut self) -> Vec<(String, Usage)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        sample(&self.seen, own_tid());
        let seen = self.seen.lock().expect("sampler stopped");
        let mut by_name: BTreeMap<String, Usage> = BTreeMap::new();
        for s in seen.values() {
            let u = by_name.entry(s.name.clone()).or_default();
            u.cpu_s += (s.last.cpu_s - s.first.cpu_s).max(0.0);
            u.switches += s.last.switches.saturating_sub(s.first.switches);
        }
        let mut rows: Vec<(String, Usage)> = by_name.into_iter().collect();
        rows.sort_by(|a, b| b.1.cpu_s.total_cmp(&a.1.cpu_s));
        rows
    }
}
