//! Seconds per op on the host, for finding where an epoch goes (`mmea bench --train` prints the table
//! when `MMEA_PROFILE=1`). Off by default: then a scope costs one relaxed atomic load.
//!
//! Each op opens a [`scope`] with its name; the time it charges is exclusive (an op that calls another op,
//! such as the tiled matmul, is charged only for its own work). Time is split by phase: ops run while
//! [`Tape::backward`](crate::autodiff::Tape::backward) walks the tape count as `backward`, the rest as
//! `forward`. On the CPU backend this is the op's compute; on a GPU it is only the recording time, since the
//! kernels run later. Native only: on wasm32 the scopes do nothing.

use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the profiler on or off (process-wide).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the profiler is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// One row of [`take`]: an op in a phase, its exclusive seconds and its number of calls.
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    pub op: &'static str,
    pub backward: bool,
    pub seconds: f64,
    pub calls: u64,
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::OpTime;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Instant;

    type Totals = HashMap<(&'static str, bool), (f64, u64)>;
    static TOTALS: Mutex<Option<Totals>> = Mutex::new(None);

    thread_local! {
        /// Per open scope: the seconds its children took.
        static CHILDREN: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
        static BACKWARD: Cell<bool> = const { Cell::new(false) };
    }

    pub struct Scope {
        open: Option<(&'static str, Instant)>,
    }

    pub fn scope(op: &'static str) -> Scope {
        if !super::enabled() {
            return Scope { open: None };
        }
        CHILDREN.with(|c| c.borrow_mut().push(0.0));
        Scope { open: Some((op, Instant::now())) }
    }

    impl Drop for Scope {
        fn drop(&mut self) {
            let Some((op, t0)) = self.open else { return };
            let total = t0.elapsed().as_secs_f64();
            let children = CHILDREN.with(|c| {
                let mut c = c.borrow_mut();
                let mine = c.pop().unwrap_or(0.0);
                if let Some(parent) = c.last_mut() {
                    *parent += total;
                }
                mine
            });
            let key = (op, BACKWARD.with(|b| b.get()));
            if let Ok(mut t) = TOTALS.lock() {
                let e = t.get_or_insert_with(HashMap::new).entry(key).or_insert((0.0, 0));
                e.0 += (total - children).max(0.0);
                e.1 += 1;
            }
        }
    }

    pub struct Phase {
        was: bool,
    }

    pub fn backward_phase() -> Phase {
        Phase { was: BACKWARD.with(|b| b.replace(true)) }
    }

    impl Drop for Phase {
        fn drop(&mut self) {
            BACKWARD.with(|b| b.set(self.was));
        }
    }

    pub fn take() -> Vec<OpTime> {
        let t = TOTALS.lock().ok().and_then(|mut t| t.take()).unwrap_or_default();
        t.into_iter().map(|((op, backward), (seconds, calls))| OpTime { op, backward, seconds, calls }).collect()
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::OpTime;
    pub struct Scope;
    pub fn scope(_op: &'static str) -> Scope {
        Scope
    }
    pub struct Phase;
    pub fn backward_phase() -> Phase {
        Phase
    }
    pub fn take() -> Vec<OpTime> {
        Vec::new()
    }
}

pub use imp::{Phase, Scope};

/// Opens a scope charging its time to `op` until it is dropped.
#[must_use = "the scope measures until it is dropped"]
pub fn scope(op: &'static str) -> Scope {
    imp::scope(op)
}

/// Marks the ops run until the guard is dropped as the backward phase.
#[must_use = "the phase lasts until the guard is dropped"]
pub fn backward_phase() -> Phase {
    imp::backward_phase()
}

/// The totals since the last call (and resets them), slowest first.
pub fn take() -> Vec<OpTime> {
    let mut v = imp::take();
    v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.op.cmp(b.op)));
    v
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn scopes_charge_exclusive_time_by_phase_and_nothing_when_off() {
        let sleep = |ms| std::thread::sleep(Duration::from_millis(ms));
        set_enabled(false);
        {
            let _s = scope("profile-test-off");
        }
        set_enabled(true);
        take();
        {
            let _outer = scope("profile-test-outer");
            sleep(20);
            {
                let _inner = scope("profile-test-inner");
                sleep(40);
            }
            let _b = backward_phase();
            let _inner = scope("profile-test-inner");
            sleep(10);
        }
        set_enabled(false);
        let rows = take();
        let get = |op: &str, backward: bool| rows.iter().find(|r| r.op == op && r.backward == backward).cloned();
        assert!(get("profile-test-off", false).is_none());
        let outer = get("profile-test-outer", false).expect("outer row");
        let inner = get("profile-test-inner", false).expect("inner forward row");
        let inner_bwd = get("profile-test-inner", true).expect("inner backward row");
        assert_eq!((outer.calls, inner.calls, inner_bwd.calls), (1, 1, 1));
        // The outer scope is charged its own 20 ms, not the 50 ms of its children.
        assert!(outer.seconds >= 0.019 && outer.seconds < 0.045, "outer {}", outer.seconds);
        assert!(inner.seconds >= 0.039, "inner {}", inner.seconds);
        assert!(inner_bwd.seconds >= 0.009 && inner_bwd.seconds < inner.seconds, "backward {}", inner_bwd.seconds);
        // Sorted slowest first.
        assert!(rows.windows(2).all(|w| w[0].seconds >= w[1].seconds));
    }
}
