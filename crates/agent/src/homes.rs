//! Persistent homes from before homes were keyed by user and template ids.
//! Every platform decides the same way whether a user keeps the home they
//! had (`HomeVolume::legacy`); only how a volume or claim is looked up
//! differs.

use std::future::Future;
use streamspace_protocol::SessionSpec;

/// The old home to mount instead of the spec's own, if any: when the spec
/// names one, its own home does not exist yet, and the old one exists and
/// belongs to this session's user and template by its labels (its name
/// alone was ambiguous: `alice` + `dev-desktop` and `alice-dev` +
/// `desktop` made the same one).
///
/// `belongs(name)` is `None` when no volume of that name exists, else
/// whether its labels name the spec's user and template.
pub async fn legacy_home<'a, F, Fut, E>(
    spec: &'a SessionSpec,
    mut belongs: F,
) -> Result<Option<&'a str>, E>
where
    F: FnMut(&'a str) -> Fut,
    Fut: Future<Output = Result<Option<bool>, E>>,
{
    let Some(home) = spec.home.as_ref() else {
        return Ok(None);
    };
    let Some(legacy) = home.legacy.as_deref() else {
        return Ok(None);
    };
    if belongs(&home.volume).await?.is_some() {
        return Ok(None);
    }
    match belongs(legacy).await? {
        Some(true) => {
            tracing::info!(
                home = legacy,
                "using the home from before homes were keyed by ids"
            );
            Ok(Some(legacy))
        }
        Some(false) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use streamspace_protocol::HomeVolume;

    fn spec(legacy: Option<&str>) -> SessionSpec {
        SessionSpec {
            home: Some(HomeVolume {
                volume: "new".into(),
                path: "/home/user".into(),
                legacy: legacy.map(str::to_owned),
            }),
            ..SessionSpec::default()
        }
    }

    /// Homes that exist, and whether each belongs to the spec's owner.
    async fn choose(spec: &SessionSpec, homes: &[(&str, bool)]) -> Option<String> {
        let homes: HashMap<&str, bool> = homes.iter().copied().collect();
        let belongs = |name: &str| std::future::ready(Ok::<_, ()>(homes.get(name).copied()));
        legacy_home(spec, belongs)
            .await
            .expect("no lookup fails")
            .map(str::to_owned)
    }

    #[tokio::test]
    async fn the_old_home_is_kept_only_when_it_is_theirs_and_the_new_one_is_not_there() {
        let upgraded = spec(Some("old"));
        assert_eq!(
            choose(&upgraded, &[("old", true)]).await.as_deref(),
            Some("old")
        );
        assert_eq!(choose(&upgraded, &[("old", false)]).await, None);
        assert_eq!(
            choose(&upgraded, &[("old", true), ("new", true)]).await,
            None
        );
        assert_eq!(choose(&upgraded, &[]).await, None);
        assert_eq!(choose(&spec(None), &[("old", true)]).await, None);
        let homeless = SessionSpec::default();
        assert_eq!(choose(&homeless, &[("old", true)]).await, None);
    }
}
