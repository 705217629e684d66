//! What a user's groups open to them: the agent pools their sessions may
//! run on, and the templates they see and launch (`allowed_groups`).
//! Admins are bound by neither. docs/GROUPS.md describes the rules.

use crate::state::AppState;
use crate::store::{DEFAULT_POOL, GroupRecord, StoreResult, User};
use crate::template::TemplateSpec;
use crate::validate::{FieldError, check_slug};

/// Longest group name: room for an identity provider's paths and
/// distinguished names (`/org/team`, `CN=…`), bounded.
pub const MAX_GROUP_NAME: usize = 128;
/// Most names in a template's `allowed_groups` or pools of a group.
pub const MAX_LIST: usize = 64;

/// Where a user's sessions may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pools {
    /// Admins, and the system (warm pools): any agent.
    Any,
    /// Only agents in these pools, sorted and without repeats.
    Only(Vec<String>),
}

impl Pools {
    pub fn allows(&self, pool: &str) -> bool {
        match self {
            Pools::Any => true,
            Pools::Only(pools) => pools.iter().any(|p| p == pool),
        }
    }

    /// The pools as a list for error messages (empty for `Any`).
    pub fn names(&self) -> Vec<String> {
        match self {
            Pools::Any => Vec::new(),
            Pools::Only(pools) => pools.clone(),
        }
    }
}

/// A user and the groups they are in, read once per request.
#[derive(Debug, Clone)]
pub struct Membership {
    pub admin: bool,
    pub groups: Vec<GroupRecord>,
}

impl Membership {
    pub async fn of(state: &AppState, user: &User) -> StoreResult<Self> {
        Ok(Membership {
            admin: user.is_admin(),
            groups: state.store.groups_of(&user.id).await?,
        })
    }

    /// The union of the groups' pools; `default` when the user is in no
    /// group, or their groups list none.
    pub fn pools(&self) -> Pools {
        if self.admin {
            return Pools::Any;
        }
        let mut pools: Vec<String> = self
            .groups
            .iter()
            .flat_map(|g| g.pools.iter().cloned())
            .collect();
        pools.sort();
        pools.dedup();
        if pools.is_empty() {
            pools.push(DEFAULT_POOL.to_owned());
        }
        Pools::Only(pools)
    }

    /// Whether the user sees and may launch `template`.
    pub fn may_use(&self, template: &TemplateSpec) -> bool {
        self.admin
            || template.allowed_groups.is_empty()
            || self
                .groups
                .iter()
                .any(|g| template.allowed_groups.contains(&g.name))
    }
}

/// A group name: 1 to [`MAX_GROUP_NAME`] characters, none of them control
/// characters, not blank.
pub fn check_group_name(field: &str, name: &str) -> Result<(), FieldError> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= MAX_GROUP_NAME
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{name:?}: a group name is 1 to {MAX_GROUP_NAME} printable characters \
                 (e.g. \"engineering\")"
            ),
        ))
    }
}

/// A list of group names, as in `allowed_groups`: each valid, no repeats,
/// at most [`MAX_LIST`].
pub fn check_group_list(field: &str, names: Vec<String>) -> Result<Vec<String>, FieldError> {
    check_list(field, &names, check_group_name)?;
    Ok(names)
}

/// A group's pools: slugs (as agents' pools are), no repeats, at most
/// [`MAX_LIST`]; returned sorted.
pub fn check_pool_list(field: &str, mut pools: Vec<String>) -> Result<Vec<String>, FieldError> {
    check_list(field, &pools, check_slug)?;
    pools.sort();
    Ok(pools)
}

fn check_list(
    field: &str,
    items: &[String],
    check: impl Fn(&str, &str) -> Result<(), FieldError>,
) -> Result<(), FieldError> {
    if items.len() > MAX_LIST {
        return Err(FieldError::new(
            field,
            format!("{} entries: at most {MAX_LIST}", items.len()),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        check(&format!("{field}[{i}]"), item)?;
        if items[..i].contains(item) {
            return Err(FieldError::new(
                format!("{field}[{i}]"),
                format!("{item:?} is listed twice: list each once"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{GroupSource, Limits};

    fn group(name: &str, pools: &[&str]) -> GroupRecord {
        GroupRecord {
            id: name.into(),
            name: name.into(),
            source: GroupSource::Local,
            limits: Limits::default(),
            pools: pools.iter().map(|p| (*p).to_owned()).collect(),
            created_at: 0,
        }
    }

    fn member_of(groups: Vec<GroupRecord>) -> Membership {
        Membership {
            admin: false,
            groups,
        }
    }

    #[test]
    fn pools_are_the_union_of_the_groups_or_default() {
        let only = |p: &[&str]| Pools::Only(p.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(member_of(vec![]).pools(), only(&["default"]));
        assert_eq!(member_of(vec![group("a", &[])]).pools(), only(&["default"]));
        let two = member_of(vec![group("a", &["gpu", "a"]), group("b", &["a", "b"])]);
        assert_eq!(two.pools(), only(&["a", "b", "gpu"]));
        assert!(!two.pools().allows("default"));
        let admin = Membership {
            admin: true,
            groups: vec![],
        };
        assert_eq!(admin.pools(), Pools::Any);
        assert!(admin.pools().allows("anything"));
    }

    #[test]
    fn lists_are_bounded_and_checked() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(check_group_list("allowed_groups", names(&["/org/team a", "CN=x"])).is_ok());
        let twice = check_group_list("allowed_groups", names(&["a", "a"])).expect_err("twice");
        assert_eq!(twice.field, "allowed_groups[1]");
        assert!(check_group_list("g", names(&[" "])).is_err());
        assert!(check_group_list("g", names(&["a\nb"])).is_err());
        assert!(check_group_list("g", vec!["x".repeat(129)]).is_err());
        let many: Vec<String> = (0..65).map(|i| i.to_string()).collect();
        assert!(check_pool_list("pools", many).is_err());
        assert_eq!(
            check_pool_list("pools", names(&["b", "a"])).expect("valid"),
            names(&["a", "b"])
        );
        assert!(check_pool_list("pools", names(&["Not A Slug"])).is_err());
    }
}
