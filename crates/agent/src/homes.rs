//! Persistent homes, the same way on every platform: which home a session
//! mounts, and whether a user keeps the home they had before homes were
//! keyed by user and template ids (`HomeVolume::legacy`). A platform only
//! says how its homes (Docker volumes, Kubernetes claims) are looked up and
//! created: [`HomeStore`].

use crate::platform::PlatformResult;
use async_trait::async_trait;
use std::collections::BTreeMap;
use streamspace_protocol::{HomeVolume, SessionSpec, labels};

/// Where a platform keeps persistent homes.
#[async_trait]
pub trait HomeStore: Sync {
    /// The labels of the home called `name`, or `None` when there is none.
    async fn home_labels(&self, name: &str) -> PlatformResult<Option<BTreeMap<String, String>>>;

    /// Creates the spec's own home (`spec.home`, which the caller checked
    /// is there); one that exists already is kept as it is: it is the
    /// user's home from an earlier session.
    async fn create_home(&self, spec: &SessionSpec) -> PlatformResult<()>;
}

/// Makes sure the session's home exists and returns the name of the one to
/// mount: the user's old home when [`legacy_home`] picks it, else the
/// spec's own, created if missing. `None` for a session without a home.
pub async fn prepare<'a>(
    store: &impl HomeStore,
    spec: &'a SessionSpec,
) -> PlatformResult<Option<&'a str>> {
    let Some(home) = spec.home.as_ref() else {
        return Ok(None);
    };
    if let Some(legacy) = legacy_home(store, spec, home).await? {
        return Ok(Some(legacy));
    }
    store.create_home(spec).await?;
    Ok(Some(&home.volume))
}

/// The old home to mount instead of the spec's own, if any: when the spec
/// names one, its own home does not exist yet, and the old one exists and
/// belongs to this session's user and template by its labels (its name
/// alone was ambiguous: `alice` + `dev-desktop` and `alice-dev` +
/// `desktop` made the same one).
async fn legacy_home<'a>(
    store: &impl HomeStore,
    spec: &SessionSpec,
    home: &'a HomeVolume,
) -> PlatformResult<Option<&'a str>> {
    let Some(legacy) = home.legacy.as_deref() else {
        return Ok(None);
    };
    if store.home_labels(&home.volume).await?.is_some() {
        return Ok(None);
    }
    match store.home_labels(legacy).await? {
        Some(labels) if is_home_of(&labels, spec) => {
            tracing::info!(
                home = legacy,
                "using the home from before homes were keyed by ids"
            );
            Ok(Some(legacy))
        }
        Some(_) => {
            tracing::warn!(
                home = legacy,
                "a home has this user's old name but its labels name another user or template: \
                 not using it"
            );
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Whether a home's labels say it belongs to the spec's user and template:
/// the only proof that a home under the old, ambiguous name
/// (`streamspace-home-{user}-{template}`) is really theirs. Names must be
/// equal as they are: a label a platform had to change (Kubernetes cuts
/// values to 63 characters) proves nothing, since two names can become the
/// same label. Ids, on a home that carries them, must be the spec's too.
pub fn is_home_of(home_labels: &BTreeMap<String, String>, spec: &SessionSpec) -> bool {
    let is = |key: &str, value: &str| home_labels.get(key).is_some_and(|v| v == value);
    let ids_agree = |key: &str, id: &str| home_labels.get(key).is_none_or(|v| v == id);
    is(labels::USER, &spec.user)
        && is(labels::TEMPLATE, &spec.template)
        && ids_agree(labels::USER_ID, spec.user_id.as_str())
        && ids_agree(labels::TEMPLATE_ID, spec.template_id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    fn spec(legacy: Option<&str>) -> SessionSpec {
        SessionSpec::fixture("s1")
            .with_home("new")
            .with_legacy_home(legacy)
    }

    fn owner(user: &str, template: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::USER.to_owned(), user.to_owned()),
            (labels::TEMPLATE.to_owned(), template.to_owned()),
        ])
    }

    /// Homes by name with their labels; remembers what it was asked to create.
    #[derive(Default)]
    struct Homes {
        existing: HashMap<String, BTreeMap<String, String>>,
        created: Mutex<Vec<String>>,
    }

    impl Homes {
        fn with(homes: &[(&str, BTreeMap<String, String>)]) -> Self {
            Homes {
                existing: homes
                    .iter()
                    .map(|(n, l)| ((*n).to_owned(), l.clone()))
                    .collect(),
                ..Homes::default()
            }
        }
    }

    #[async_trait]
    impl HomeStore for Homes {
        async fn home_labels(
            &self,
            name: &str,
        ) -> PlatformResult<Option<BTreeMap<String, String>>> {
            Ok(self.existing.get(name).cloned())
        }
        async fn create_home(&self, spec: &SessionSpec) -> PlatformResult<()> {
            let name = spec.home.as_ref().expect("a home").volume.clone();
            self.created.lock().expect("created").push(name);
            Ok(())
        }
    }

    async fn choose(spec: &SessionSpec, homes: &Homes) -> Option<String> {
        let chosen = prepare(homes, spec).await.expect("no lookup fails");
        chosen.map(str::to_owned)
    }

    #[tokio::test]
    async fn the_old_home_is_kept_only_when_it_is_theirs_and_the_new_one_is_not_there() {
        let upgraded = spec(Some("old"));
        let theirs = Homes::with(&[("old", owner("alice", "desktop"))]);
        assert_eq!(choose(&upgraded, &theirs).await.as_deref(), Some("old"));
        assert!(theirs.created.lock().expect("created").is_empty());

        let others = Homes::with(&[("old", owner("alice-dev", "desktop"))]);
        assert_eq!(choose(&upgraded, &others).await.as_deref(), Some("new"));
        assert_eq!(*others.created.lock().expect("created"), ["new"]);

        let both = Homes::with(&[
            ("old", owner("alice", "desktop")),
            ("new", owner("alice", "desktop")),
        ]);
        assert_eq!(choose(&upgraded, &both).await.as_deref(), Some("new"));
        assert_eq!(
            choose(&upgraded, &Homes::default()).await.as_deref(),
            Some("new")
        );
        let unlabelled = Homes::with(&[("old", owner("alice", "desktop"))]);
        assert_eq!(
            choose(&spec(None), &unlabelled).await.as_deref(),
            Some("new")
        );
        let homeless = SessionSpec::default();
        assert_eq!(choose(&homeless, &theirs).await, None);
    }

    #[test]
    fn a_home_is_theirs_only_when_its_labels_name_user_and_template_exactly() {
        let spec = spec(None);
        assert!(is_home_of(&owner("alice", "desktop"), &spec));
        // Same old name, other owner: alice-dev + desktop vs alice + dev-desktop.
        assert!(!is_home_of(&owner("alice-dev", "desktop"), &spec));
        assert!(!is_home_of(&owner("alice", "dev-desktop"), &spec));
        assert!(!is_home_of(&BTreeMap::new(), &spec));
        let mut with_ids = spec.clone();
        with_ids.user_id = "u1".into();
        let mut labelled = owner("alice", "desktop");
        labelled.insert(labels::USER_ID.to_owned(), "u1".to_owned());
        assert!(is_home_of(&labelled, &with_ids));
        labelled.insert(labels::USER_ID.to_owned(), "u2".to_owned());
        assert!(!is_home_of(&labelled, &with_ids));
    }
}
