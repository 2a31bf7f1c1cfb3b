//! `DeviceMonitor`: reads a `PowerSource` (and `/proc/meminfo`) in the background, smooths the
//! readings (`Smoother`) and publishes `DeviceState` through a `tokio::sync::watch` channel, so
//! the per-request read is a copy out of the channel, never IO.
//!
//! A failed read keeps the last good power and thermal state (the smoother is not fed, so an
//! error never counts as a "cooler" reading), is counted in `MonitorStatus`, and is logged once
//! when the source starts failing and once when it recovers.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::{DeviceError, DeviceSettings, DeviceState, MemInfo, PowerSource, Smoother, Smoothing};

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSettings {
    /// Time between background reads.
    pub refresh: Duration,
    pub smoothing: Smoothing,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            refresh: Duration::from_secs(5),
            smoothing: Smoothing::default(),
        }
    }
}

/// How reading has gone so far, for `/health` and diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorStatus {
    pub source: &'static str,
    /// Refreshes in which the source and `/proc/meminfo` both read cleanly.
    pub ok_reads: u64,
    pub failed_reads: u64,
    /// Failed refreshes since the last clean one; 0 when healthy.
    pub consecutive_failures: u32,
    /// The most recent error, kept after recovery so `/health` can show what happened.
    pub last_error: Option<DeviceError>,
}

type Reply = oneshot::Sender<Result<DeviceState, DeviceError>>;

pub struct DeviceMonitor {
    state: watch::Receiver<DeviceState>,
    status: Arc<Mutex<MonitorStatus>>,
    /// Asks the task for an immediate refresh; bounded, as every channel here.
    commands: mpsc::Sender<Reply>,
    task: JoinHandle<()>,
}

/// Everything one refresh needs; owned by the task, locked only inside `spawn_blocking`.
struct Refresher {
    source: Arc<dyn PowerSource>,
    meminfo: Option<MemInfo>,
    smoother: Smoother,
    state: DeviceState,
    /// Memory the last good reading stated itself (file source); `None` fields come from meminfo.
    stated_memory: (Option<u64>, Option<u64>),
    status: Arc<Mutex<MonitorStatus>>,
}

impl Refresher {
    /// Reads once and returns the new state and the first error met, if any.
    fn step(&mut self) -> (DeviceState, Option<DeviceError>) {
        let name = self.source.name();
        let mut error = None;
        let mut next = match self.source.read() {
            Ok(raw) => {
                self.stated_memory = (raw.mem_available, raw.mem_total);
                self.smoother.apply(&raw, name)
            }
            Err(e) => {
                error = Some(e);
                self.state
            }
        };
        let (stated_available, stated_total) = self.stated_memory;
        next.mem_available = stated_available.unwrap_or(self.state.mem_available);
        next.mem_total = stated_total.unwrap_or(self.state.mem_total);
        if (stated_available.is_none() || stated_total.is_none())
            && let Some(meminfo) = &self.meminfo
        {
            match meminfo.read() {
                Ok(m) => {
                    next.mem_available = stated_available.unwrap_or(m.available);
                    next.mem_total = stated_total.unwrap_or(m.total);
                }
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        self.state = next;
        self.record(name, error.as_ref());
        (next, error)
    }

    fn record(&self, name: &'static str, error: Option<&DeviceError>) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        match error {
            None => {
                if status.consecutive_failures > 0 {
                    tracing::info!(
                        source = name,
                        failures = status.consecutive_failures,
                        "device source recovered"
                    );
                }
                status.ok_reads += 1;
                status.consecutive_failures = 0;
            }
            Some(e) => {
                if status.consecutive_failures == 0 {
                    tracing::warn!(source = name, error = %e, "device source failed; keeping the last good state");
                } else {
                    tracing::debug!(source = name, error = %e, "device source still failing");
                }
                status.failed_reads += 1;
                status.consecutive_failures = status.consecutive_failures.saturating_add(1);
                status.last_error = Some(e.clone());
            }
        }
    }
}

impl DeviceMonitor {
    /// Reads once (so `current()` is meaningful as soon as this returns), then refreshes every
    /// `settings.refresh` on a tokio task until the monitor is dropped. `meminfo = None` leaves
    /// memory to the source (0 when it does not say). Must run inside a tokio runtime.
    pub async fn start(
        source: Arc<dyn PowerSource>,
        meminfo: Option<MemInfo>,
        settings: MonitorSettings,
    ) -> DeviceMonitor {
        let name = source.name();
        let status = Arc::new(Mutex::new(MonitorStatus {
            source: name,
            ok_reads: 0,
            failed_reads: 0,
            consecutive_failures: 0,
            last_error: None,
        }));
        let refresher = Arc::new(Mutex::new(Refresher {
            source,
            meminfo,
            smoother: Smoother::new(settings.smoothing),
            state: DeviceState::unknown(name),
            stated_memory: (None, None),
            status: status.clone(),
        }));
        let (tx, rx) = watch::channel(DeviceState::unknown(name));
        // The first reading's outcome is already in `status`.
        let _first = refresh_once(&refresher, &tx).await;
        let (commands, command_rx) = mpsc::channel(4);
        let task = tokio::spawn(run(refresher, tx, command_rx, settings.refresh));
        tracing::info!(
            source = name,
            refresh_ms = settings.refresh.as_millis() as u64,
            "device monitor started"
        );
        DeviceMonitor {
            state: rx,
            status,
            commands,
            task,
        }
    }

    /// Builds the configured source and starts it with the default smoothing. `/proc/meminfo`
    /// is read on Linux and Android, and elsewhere only if the configured file exists.
    pub async fn from_config(settings: &DeviceSettings) -> DeviceMonitor {
        let linux_like = cfg!(any(target_os = "linux", target_os = "android"));
        let meminfo = (linux_like || settings.meminfo.exists()).then(|| MemInfo::new(&settings.meminfo));
        let monitor_settings = MonitorSettings {
            refresh: settings.refresh,
            ..MonitorSettings::default()
        };
        DeviceMonitor::start(settings.source.build(), meminfo, monitor_settings).await
    }

    /// The latest state: a copy under the watch channel's read lock, no IO.
    pub fn current(&self) -> DeviceState {
        *self.state.borrow()
    }

    /// A receiver whose `changed()` wakes on the next change of the published state (not on
    /// every refresh); the state current at subscription counts as seen.
    pub fn subscribe(&self) -> watch::Receiver<DeviceState> {
        let mut rx = self.state.clone();
        rx.mark_unchanged();
        rx
    }

    pub fn status(&self) -> MonitorStatus {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Reads now instead of waiting for the next tick; returns the published state, or the
    /// error met (the state then keeps its last good power and thermal values).
    pub async fn refresh(&self) -> Result<DeviceState, DeviceError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || DeviceError::Internal("the refresh task has stopped".to_owned());
        self.commands.send(reply).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for DeviceMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for DeviceMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceMonitor")
            .field("current", &self.current())
            .field("status", &self.status())
            .finish()
    }
}

async fn run(
    refresher: Arc<Mutex<Refresher>>,
    tx: watch::Sender<DeviceState>,
    mut commands: mpsc::Receiver<Reply>,
    period: Duration,
) {
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    // After a stall (laptop suspend), read once and carry on rather than in a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let reply = tokio::select! {
            _ = ticker.tick() => None,
            command = commands.recv() => match command {
                Some(reply) => Some(reply),
                None => return,
            },
        };
        let result = refresh_once(&refresher, &tx).await;
        if let Some(reply) = reply {
            // The caller may have given up waiting; nothing to do then.
            let _ = reply.send(result);
        }
    }
}

/// One blocking read off the async workers, then publish if anything changed.
async fn refresh_once(
    refresher: &Arc<Mutex<Refresher>>,
    tx: &watch::Sender<DeviceState>,
) -> Result<DeviceState, DeviceError> {
    let shared = refresher.clone();
    let joined =
        tokio::task::spawn_blocking(move || shared.lock().unwrap_or_else(PoisonError::into_inner).step()).await;
    let (state, error) = match joined {
        Ok(outcome) => outcome,
        Err(e) => {
            let error = DeviceError::Internal(format!("device source panicked: {e}"));
            let guard = refresher.lock().unwrap_or_else(PoisonError::into_inner);
            guard.record(guard.source.name(), Some(&error));
            (guard.state, Some(error))
        }
    };
    tx.send_if_modified(|current| {
        let changed = *current != state;
        *current = state;
        changed
    });
    match error {
        Some(e) => Err(e),
        None => Ok(state),
    }
}
