//! The admin settings as requests read them. The MFA gate asks on every
//! logged-in request, which was a database round trip each (one of the
//! dozen an admission makes while every other waits). They are kept in
//! memory for a second (`Config::settings_recheck`), and forgotten at once
//! when they are saved here or another replica says it saved them
//! (`cluster::bus`), so a change applies on every replica at once, and
//! within that second even when a notice is lost or the database was
//! changed by hand.

use crate::cluster::broadcast::Replicated;
use crate::store::{Settings, Store, StoreResult};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

pub struct SettingsCache {
    store: Store,
    fresh: Duration,
    kept: Mutex<Kept>,
    /// That they changed: here (told to the other replicas) or elsewhere.
    changed: Replicated<()>,
}

#[derive(Default)]
struct Kept {
    /// The settings and when the read that found them began.
    settings: Option<(Settings, Instant)>,
    /// Bumped by every change, so that a read begun before one does not
    /// keep what it found.
    generation: u64,
}

impl SettingsCache {
    /// Reads the settings again once those read are `fresh` no more.
    pub fn new(store: Store, fresh: Duration) -> Self {
        Self {
            store,
            fresh,
            kept: Mutex::default(),
            changed: Replicated::new(16),
        }
    }

    /// The settings, read from the database when what is kept is no longer
    /// fresh or was changed since.
    pub async fn get(&self) -> StoreResult<Settings> {
        let generation = {
            let kept = self.kept();
            if let Some((settings, at)) = &kept.settings
                && at.elapsed() < self.fresh
            {
                return Ok(settings.clone());
            }
            kept.generation
        };
        let began = Instant::now();
        let settings = self.store.settings().await?;
        let mut kept = self.kept();
        if kept.generation == generation {
            kept.settings = Some((settings.clone(), began));
        }
        Ok(settings)
    }

    /// Saves `settings`; this replica uses them from now on and the others
    /// are told to.
    pub async fn save(&self, settings: &Settings) -> StoreResult<()> {
        self.store.save_settings(settings).await?;
        self.forget();
        self.changed.here(());
        Ok(())
    }

    /// Another replica saved new settings.
    pub fn told(&self) {
        self.forget();
        self.changed.told(());
    }

    /// Changes saved here from now on, for the bus.
    pub fn ours(&self) -> broadcast::Receiver<()> {
        self.changed.ours()
    }

    fn forget(&self) {
        let mut kept = self.kept();
        kept.settings = None;
        kept.generation += 1;
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Nothing can panic while the lock is held; recover anyway.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MfaRequired;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::connect(&Store::sqlite_url(dir.path())).await;
        (dir, store.expect("store"))
    }

    fn everyone() -> Settings {
        Settings {
            mfa_required: MfaRequired::Everyone,
            ..Settings::default()
        }
    }

    /// Saved here: used at once, and the bus is given the news.
    #[tokio::test]
    async fn a_change_saved_here_applies_at_once_and_is_told() {
        let (_dir, store) = store().await;
        let cache = SettingsCache::new(store, Duration::from_secs(3600));
        let mut ours = cache.ours();
        assert_eq!(cache.get().await.expect("read"), Settings::default());
        cache.save(&everyone()).await.expect("save");
        assert_eq!(cache.get().await.expect("read"), everyone());
        assert!(ours.try_recv().is_ok(), "the other replicas are not told");
    }

    /// Saved by another replica (the database changed under this one): the
    /// old value holds until told; what was told is never told again.
    #[tokio::test]
    async fn a_change_saved_elsewhere_applies_when_told() {
        let (_dir, store) = store().await;
        let cache = SettingsCache::new(store.clone(), Duration::from_secs(3600));
        let mut ours = cache.ours();
        cache.get().await.expect("read");
        store.save_settings(&everyone()).await.expect("elsewhere");
        assert_eq!(cache.get().await.expect("kept"), Settings::default());
        cache.told();
        assert_eq!(cache.get().await.expect("told"), everyone());
        assert!(ours.try_recv().is_err(), "a told change was told again");
    }

    /// A change nobody told of (a lost notice, an edit by hand) applies
    /// once what was kept is no longer fresh.
    #[tokio::test]
    async fn an_untold_change_applies_once_the_kept_value_is_stale() {
        let (_dir, store) = store().await;
        let fresh = Duration::from_millis(50);
        let cache = SettingsCache::new(store.clone(), fresh);
        cache.get().await.expect("read");
        store.save_settings(&everyone()).await.expect("by hand");
        tokio::time::sleep(fresh).await;
        assert_eq!(cache.get().await.expect("stale"), everyone());
    }
}
