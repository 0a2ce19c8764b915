//! Swapping the roster in while the daemon runs.
//!
//! Readers take an `Arc<Roster>` snapshot, so a call being put through keeps the
//! roster it started with; a reload swaps the pointer and never blocks a call for
//! longer than that. A bad file is rejected and the previous roster stays.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::Roster;
use crate::config::{ConfigErrors, Station};

/// Shared, swappable roster; cheap to clone, one per task that needs it.
#[derive(Clone, Debug)]
pub struct RosterHandle {
    inner: Arc<RwLock<Slot>>,
    /// Numbers each reading of the file, in the order they start.
    reads: Arc<AtomicU64>,
    /// Re-reads that succeeded and that were rejected, for `/metrics`.
    reloads: Arc<[AtomicU64; 2]>,
}

/// The roster in force and the number of the reading it came from.
#[derive(Debug)]
struct Slot {
    roster: Arc<Roster>,
    read_no: u64,
}

impl RosterHandle {
    /// Starts with `roster` (from [`Roster::load`] or [`Roster::empty`]).
    pub fn new(roster: Roster) -> Self {
        RosterHandle {
            inner: Arc::new(RwLock::new(Slot {
                roster: Arc::new(roster),
                read_no: 0,
            })),
            reads: Arc::new(AtomicU64::new(0)),
            reloads: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
        }
    }

    /// The roster now; hold on to it for the whole of one call.
    pub fn current(&self) -> Arc<Roster> {
        // A panic while holding the lock cannot leave a half-swapped Arc: take it.
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .roster
            .clone()
    }

    /// Replaces the roster outright (the new value is already validated).
    pub fn replace(&self, roster: Roster) -> Vec<String> {
        let read_no = self.next_read();
        self.swap(roster, read_no)
    }

    /// Reads `path` again; on success swaps it in and returns what changed (empty
    /// if nothing did), on error keeps the current roster and returns the errors.
    /// Called by the file watcher and by the daemon on SIGHUP.
    pub fn reload(&self, path: &Path, stations: &[Station]) -> Result<Vec<String>, ConfigErrors> {
        let read_no = self.next_read();
        let loaded = Roster::load(path, stations);
        self.reloads[usize::from(loaded.is_err())].fetch_add(1, Ordering::Relaxed);
        Ok(self.swap(loaded?, read_no))
    }

    /// (re-reads swapped in, re-reads rejected) since start.
    pub fn reload_counts(&self) -> (u64, u64) {
        let [ok, err] = &*self.reloads;
        (ok.load(Ordering::Relaxed), err.load(Ordering::Relaxed))
    }

    /// The number of the reading in force: 0 for the roster at start, then
    /// higher with every reading swapped in.
    pub fn generation(&self) -> u64 {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .read_no
    }

    fn next_read(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Swaps in `roster` from reading `read_no`, unless a later reading is in
    /// force already: the watcher and SIGHUP may read the file at once, and
    /// the older text must not win by finishing last.
    fn swap(&self, roster: Roster, read_no: u64) -> Vec<String> {
        let mut slot = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if read_no < slot.read_no {
            return Vec::new();
        }
        let changes = roster.diff(&slot.roster);
        *slot = Slot {
            roster: Arc::new(roster),
            read_no,
        };
        changes
    }
}

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Last modification time.
    pub modified: Option<SystemTime>,
    /// Size in bytes.
    pub len: u64,
}

impl FileStamp {
    /// The stamp of `meta`.
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
        }
    }
}

/// What the watcher should do after one look at the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchAction {
    /// Nothing new.
    Nothing,
    /// The file changed and has stayed the same for one interval: reload it.
    Reload,
    /// The file is gone (first look after it went): warn once, keep the roster.
    Missing,
}

/// Decides when to reload from successive stamps, sans I/O. A change is acted on
/// only once two looks agree, so an editor's half-written file is not read (and
/// rejected) in passing.
#[derive(Debug, Clone)]
pub struct ChangeDetector {
    applied: Option<FileStamp>,
    pending: Option<FileStamp>,
}

impl ChangeDetector {
    /// Starts from the stamp of the file as the daemon loaded it (`None`: absent).
    pub fn new(loaded: Option<FileStamp>) -> Self {
        ChangeDetector {
            applied: loaded,
            pending: None,
        }
    }

    /// Feeds one look at the file (`None`: it cannot be read).
    pub fn observe(&mut self, now: Option<FileStamp>) -> WatchAction {
        let Some(stamp) = now else {
            self.pending = None;
            return if self.applied.take().is_some() {
                WatchAction::Missing
            } else {
                WatchAction::Nothing
            };
        };
        if self.applied == Some(stamp) {
            self.pending = None;
            WatchAction::Nothing
        } else if self.pending == Some(stamp) {
            // Recorded whether or not the reload succeeds: a rejected file is
            // reported once, not every second, until it is edited again.
            self.applied = Some(stamp);
            self.pending = None;
            WatchAction::Reload
        } else {
            self.pending = Some(stamp);
            WatchAction::Nothing
        }
    }
}

/// Watches `path` by polling its modification time and size every `interval`,
/// reloading into `handle` when it changes, and logging the outcome. Runs until
/// the task is aborted. SIGHUP is the daemon's business (it calls
/// [`RosterHandle::reload`]). The look and the reload touch the disk and parse
/// a file that may hold thousands of entries, so both run on tokio's blocking
/// threads, never on the async workers that carry the calls.
pub fn watch(
    handle: RosterHandle,
    path: PathBuf,
    stations: Vec<Station>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let path: Arc<Path> = path.into();
    let stations: Arc<[Station]> = stations.into();
    tokio::spawn(async move {
        let mut detector = ChangeDetector::new(stamp(&path).await);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shown = path.display();
        loop {
            tick.tick().await;
            match detector.observe(stamp(&path).await) {
                WatchAction::Nothing => {}
                WatchAction::Missing => tracing::warn!(
                    "roster {shown} cannot be read any more, keeping the previous roster"
                ),
                WatchAction::Reload => {
                    let (handle, path, stations) = (handle.clone(), path.clone(), stations.clone());
                    let reloaded =
                        tokio::task::spawn_blocking(move || handle.reload(&path, &stations)).await;
                    match reloaded {
                        Ok(Ok(changes)) => {
                            let changes = if changes.is_empty() {
                                "no changes".to_string()
                            } else {
                                changes.join("; ")
                            };
                            tracing::info!("roster reloaded from {shown}: {changes}");
                        }
                        Ok(Err(errors)) => tracing::error!(
                            "roster {shown} rejected, keeping the previous roster:\n{errors}"
                        ),
                        Err(e) => tracing::error!(
                            "roster {shown} reload failed ({e}), keeping the previous roster"
                        ),
                    }
                }
            }
        }
    })
}

/// The file's stamp now (`None`: it cannot be read), from a blocking thread.
async fn stamp(path: &Path) -> Option<FileStamp> {
    tokio::fs::metadata(path)
        .await
        .ok()
        .map(|m| FileStamp::of(&m))
}

#[cfg(test)]
mod tests {
    use super::super::tests::stations;
    use super::*;

    const ONE: &str = "[[volunteer]]\nid = \"wang\"\nname = \"王阿姨\"\nphone = \"13800138000\"\n";
    const TWO: &str = "[[volunteer]]\nid = \"wang\"\nname = \"王阿姨\"\nphone = \"13800138000\"\n\
                       [[volunteer]]\nid = \"li\"\nname = \"李老师\"\nphone = \"1001\"\n";

    fn stamp(len: u64) -> Option<FileStamp> {
        Some(FileStamp {
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(len)),
            len,
        })
    }

    #[test]
    fn reload_swaps_and_reports_changes_but_old_snapshots_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.toml");
        std::fs::write(&path, ONE).unwrap();
        let handle = RosterHandle::new(Roster::load(&path, &stations()).unwrap());
        let during_call = handle.current();
        std::fs::write(&path, TWO).unwrap();
        let changes = handle.reload(&path, &stations()).unwrap();
        assert_eq!(changes, ["volunteer added: 李老师 (li) 1001"]);
        assert_eq!(handle.current().volunteers.len(), 2);
        assert_eq!(during_call.volunteers.len(), 1);
        assert!(handle.reload(&path, &stations()).unwrap().is_empty());
    }

    #[test]
    fn an_older_reading_finishing_last_does_not_win() {
        let handle = RosterHandle::new(Roster::empty());
        let parse = |text: &str| Roster::from_str(text, Path::new("roster.toml"), &stations());
        // The watcher starts reading the file, then SIGHUP reads the newer text
        // and lands first; the watcher's older reading lands after it.
        let watcher = handle.next_read();
        let sighup = handle.next_read();
        assert_eq!(handle.swap(parse(TWO).unwrap(), sighup).len(), 2);
        assert!(handle.swap(parse(ONE).unwrap(), watcher).is_empty());
        assert_eq!(handle.current().volunteers.len(), 2);
        // A reading started later still lands.
        handle.replace(parse(ONE).unwrap());
        assert_eq!(handle.current().volunteers.len(), 1);
    }

    #[test]
    fn reload_with_a_bad_file_keeps_the_old_roster() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.toml");
        std::fs::write(&path, TWO).unwrap();
        let handle = RosterHandle::new(Roster::load(&path, &stations()).unwrap());
        std::fs::write(
            &path,
            format!("{TWO}[[fallback]]\nstation = \"helth\"\nvolunteers = []\n"),
        )
        .unwrap();
        let e = handle.reload(&path, &stations()).unwrap_err();
        assert!(
            e.to_string()
                .contains("roster.toml:10: [[fallback]] station: unknown station \"helth\""),
            "{e}"
        );
        assert_eq!(handle.current().volunteers.len(), 2);
        std::fs::remove_file(&path).unwrap();
        assert!(handle.reload(&path, &stations()).is_err());
        assert_eq!(handle.current().volunteers.len(), 2);
    }

    #[test]
    fn detector_waits_for_the_file_to_settle() {
        let mut d = ChangeDetector::new(stamp(1));
        assert_eq!(d.observe(stamp(1)), WatchAction::Nothing);
        // Half-written, then finished: reload only once the stamp holds still.
        assert_eq!(d.observe(stamp(2)), WatchAction::Nothing);
        assert_eq!(d.observe(stamp(3)), WatchAction::Nothing);
        assert_eq!(d.observe(stamp(3)), WatchAction::Reload);
        assert_eq!(d.observe(stamp(3)), WatchAction::Nothing);
        // Deleted: warn once; recreated: reload once it settles.
        assert_eq!(d.observe(None), WatchAction::Missing);
        assert_eq!(d.observe(None), WatchAction::Nothing);
        assert_eq!(d.observe(stamp(4)), WatchAction::Nothing);
        assert_eq!(d.observe(stamp(4)), WatchAction::Reload);
        // Started without a file: its appearance is a change.
        let mut d = ChangeDetector::new(None);
        assert_eq!(d.observe(None), WatchAction::Nothing);
        assert_eq!(d.observe(stamp(5)), WatchAction::Nothing);
        assert_eq!(d.observe(stamp(5)), WatchAction::Reload);
    }

    #[tokio::test]
    async fn watch_picks_up_a_file_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.toml");
        std::fs::write(&path, ONE).unwrap();
        let handle = RosterHandle::new(Roster::load(&path, &stations()).unwrap());
        let task = watch(
            handle.clone(),
            path.clone(),
            stations(),
            Duration::from_millis(20),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A bad edit is rejected...
        std::fs::write(&path, "[[volunteer]]\nid = \"x\"\n").unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(handle.current().volunteers.len(), 1);
        // ...and the fixed file is picked up.
        std::fs::write(&path, TWO).unwrap();
        let picked_up = tokio::time::timeout(Duration::from_secs(5), async {
            while handle.current().volunteers.len() != 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        task.abort();
        assert!(picked_up.is_ok(), "roster was not reloaded");
    }
}
