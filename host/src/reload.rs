//! Hot deploy: on SIGHUP, on a control `reload` call, and with `--watch` when a listed file
//! changes, the config is read again and every component compiled and checked, on a blocking
//! thread (off the serving path). Only when all of it loads is it handed to the server loop
//! ([`crate::server::serve_with`]), which swaps it in: calls already running finish on the old
//! components, new calls go to the new ones, servers added or removed are subscribed or
//! unsubscribed. A config or component that fails to load leaves everything serving as before,
//! with one log line naming the file and the reason.
//!
//! Host-wide settings (the transport URL, `executor_thread_pool_size`, the prefetch count,
//! `kombu_missing_consumer_retry_timeout`, `[admin]`) take effect at the next start; a reload that
//! changes them says so.

use crate::config::Config;
use crate::metrics;
use crate::sandbox::Sandbox;
use crate::server::{self, Reloaded};
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// How long after a file event the reload waits for more (an editor or `cargo build` writes a
/// file in several steps).
const SETTLE: Duration = Duration::from_millis(300);

/// What asks for a reload, with the reason for the log.
pub type Trigger = UnboundedSender<String>;

/// Runs reloads one after another until every trigger is gone. `current` is the config being
/// served (for the host-wide settings that do not change live).
pub fn spawn(
    config_path: PathBuf,
    current: &Config,
    sandbox: Arc<Sandbox>,
    to_server: UnboundedSender<Reloaded>,
    watch: bool,
) -> anyhow::Result<Trigger> {
    let (trigger, mut triggers): (Trigger, UnboundedReceiver<String>) =
        tokio::sync::mpsc::unbounded_channel();
    let watcher = if watch {
        Some(FileWatcher::start(&config_path, current, trigger.clone())?)
    } else {
        None
    };
    let mut settings = HostSettings::of(current);
    tokio::spawn(async move {
        while let Some(mut why) = triggers.recv().await {
            if why.starts_with("changed:") {
                tokio::time::sleep(SETTLE).await;
            }
            // Whatever else asked meanwhile is served by this one reload.
            while let Ok(more) = triggers.try_recv() {
                if !why.contains(&more) {
                    why = format!("{why}; {more}");
                }
            }
            tracing::info!("reloading ({why})");
            let path = config_path.clone();
            let engine = sandbox.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let config = Config::load(&path)?;
                let servers = server::load_with(&engine, &config)?;
                Ok::<_, anyhow::Error>((config, servers))
            })
            .await;
            let (config, servers) = match loaded {
                Ok(Ok(loaded)) => loaded,
                Ok(Err(e)) => {
                    metrics::get().reload(false);
                    tracing::error!("reload refused, still serving as before: {e:#}");
                    continue;
                }
                Err(e) => {
                    metrics::get().reload(false);
                    tracing::error!("reload refused, still serving as before: it failed: {e}");
                    continue;
                }
            };
            let next = HostSettings::of(&config);
            for what in settings.differences(&next) {
                tracing::warn!("{what} changed: it takes effect when the host restarts");
            }
            settings = next;
            if let Some(w) = &watcher {
                w.follow(&config_path, &config);
            }
            metrics::get().reload(true);
            if to_server.send(Reloaded { servers }).is_err() {
                return;
            }
        }
    });
    Ok(trigger)
}

/// The settings a reload cannot change while serving.
#[derive(PartialEq)]
struct HostSettings {
    values: Vec<(&'static str, String)>,
}

impl HostSettings {
    fn of(c: &Config) -> Self {
        HostSettings {
            values: vec![
                ("the transport URL", c.transport_url.masked()),
                ("executor_thread_pool_size", c.in_flight.to_string()),
                ("rabbit_qos_prefetch_count", c.prefetch.to_string()),
                (
                    "kombu_missing_consumer_retry_timeout",
                    c.reply_retry.as_secs().to_string(),
                ),
                ("[admin] listen", format!("{:?}", c.admin)),
            ],
        }
    }

    fn differences(&self, next: &HostSettings) -> Vec<&'static str> {
        self.values
            .iter()
            .zip(&next.values)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| a.0)
            .collect()
    }
}

/// `--watch`: file events in the directories of the config and its components, filtered to
/// those files.
struct FileWatcher {
    watcher: Mutex<notify::RecommendedWatcher>,
    files: Arc<Mutex<BTreeSet<PathBuf>>>,
    dirs: Mutex<BTreeSet<PathBuf>>,
}

/// The files a config lists: itself and every component.
fn listed(config_path: &Path, config: &Config) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    files.insert(normal(config_path));
    for server in &config.servers {
        for e in &server.endpoints {
            files.insert(normal(&e.path));
        }
    }
    files
}

/// A path with its directory resolved (symlinks, `..`), so that events and listed paths compare.
fn normal(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.to_path_buf())
            .join(name),
        _ => absolute,
    }
}

impl FileWatcher {
    fn start(config_path: &Path, config: &Config, trigger: Trigger) -> anyhow::Result<Self> {
        let files = Arc::new(Mutex::new(listed(config_path, config)));
        let seen = files.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if !matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any
            ) {
                return;
            }
            let files = seen.lock().unwrap_or_else(PoisonError::into_inner);
            for path in &event.paths {
                let path = normal(path);
                if files.contains(&path) {
                    let _ = trigger.send(format!("changed: {}", path.display()));
                    return;
                }
            }
        })
        .map_err(|e| anyhow::anyhow!("--watch: cannot watch files: {e}"))?;
        let me = FileWatcher {
            watcher: Mutex::new(watcher),
            files,
            dirs: Mutex::new(BTreeSet::new()),
        };
        me.follow(config_path, config);
        tracing::info!(
            "watching {} files for changes",
            me.files
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
        );
        Ok(me)
    }

    /// Watches what `config` lists from now on.
    fn follow(&self, config_path: &Path, config: &Config) {
        let files = listed(config_path, config);
        let mut dirs = self.dirs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut watcher = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
        for dir in files.iter().filter_map(|f| f.parent()) {
            if dirs.contains(dir) {
                continue;
            }
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    dirs.insert(dir.to_path_buf());
                }
                Err(e) => tracing::warn!("--watch: cannot watch {}: {e}", dir.display()),
            }
        }
        *self.files.lock().unwrap_or_else(PoisonError::into_inner) = files;
    }
}
