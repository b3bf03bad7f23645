//! Scratch directories for tests (shared by `tests/common` and `tests/support`).

use std::path::{Path, PathBuf};

/// A fresh directory named for one test (`name` and this process make it
/// unique; what an earlier run left is removed), removed again with
/// everything in it when the test drops it.
pub fn temp_dir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("otel-session-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// A directory removed with everything in it when dropped (declare it before
/// the manager or child that writes there, so that one goes first).
pub struct TempDir(pub PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // The session timer thread may be in the middle of a throttled save
        // (it holds the manager while it runs) as the test drops its handles:
        // removal then finds the directory not empty. Try again for up to a
        // second.
        for _ in 0..50 {
            if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
