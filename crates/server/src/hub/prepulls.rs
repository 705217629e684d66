//! Pre-pulls as admins see them: for each template an admin asked to
//! pre-pull, where each agent asked stands (requested, pulling with its
//! progress, done, failed). Kept in memory only: it is a view of work in
//! flight, and asking again after a restart is cheap. An agent can only
//! update an entry the control plane made for it (a request it was sent),
//! so what agents report cannot grow this.

use crate::store::now_ms;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use streamspace_protocol::{AgentId, PullState, PullStatus, TemplateId};

/// One agent's pre-pull of one template's image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = PrepullEntry)]
pub struct Entry {
    pub image: String,
    #[schema(value_type = PullState)]
    pub state: PullState,
    /// Progress while pulling ("pulling …: 42% (120 MB of 286 MB)"), or
    /// why it failed.
    pub message: Option<String>,
    /// When the entry last changed, in milliseconds since the epoch.
    pub updated_at_ms: i64,
}

#[derive(Default)]
pub struct Board {
    by_template: Mutex<HashMap<TemplateId, BTreeMap<AgentId, Entry>>>,
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TemplateId, BTreeMap<AgentId, Entry>>> {
        self.by_template.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `agents` were asked to pull `image` for `template_id`;
    /// what they said about an earlier request is replaced.
    pub fn requested(&self, template_id: &TemplateId, image: &str, agents: &[AgentId]) {
        let entry = Entry {
            image: image.to_owned(),
            state: PullState::Requested,
            message: None,
            updated_at_ms: now_ms(),
        };
        let entries = agents.iter().map(|a| (a.clone(), entry.clone())).collect();
        self.lock().insert(template_id.clone(), entries);
    }

    /// Applies what `agent_id` says; `false` when it answers nothing that
    /// was asked of it (another image, a template it was not asked about).
    pub fn report(&self, agent_id: &AgentId, status: PullStatus) -> bool {
        let mut board = self.lock();
        let Some(entry) = board
            .get_mut(&status.template_id)
            .and_then(|entries| entries.get_mut(agent_id))
            .filter(|entry| entry.image == status.image)
        else {
            return false;
        };
        // A finished pull stays finished: a late progress report (sent
        // before the result, delivered after) must not undo it.
        if matches!(entry.state, PullState::Done | PullState::Failed)
            && status.state == PullState::Pulling
        {
            return false;
        }
        entry.state = status.state;
        entry.message = status.message;
        entry.updated_at_ms = now_ms();
        true
    }

    /// Where each agent asked stands, by agent.
    pub fn of(&self, template_id: &TemplateId) -> BTreeMap<AgentId, Entry> {
        self.lock().get(template_id).cloned().unwrap_or_default()
    }

    /// Forgets a deleted template's pre-pulls.
    pub fn forget(&self, template_id: &TemplateId) {
        self.lock().remove(template_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(template: &str, image: &str, state: PullState) -> PullStatus {
        PullStatus {
            template_id: template.into(),
            image: image.into(),
            state,
            message: Some("m".into()),
        }
    }

    #[test]
    fn agents_update_only_what_they_were_asked() {
        let board = Board::default();
        let (a, b) = (AgentId::from("a"), AgentId::from("b"));
        board.requested(&"t".into(), "img:1", std::slice::from_ref(&a));
        assert!(
            !board.report(&b, status("t", "img:1", PullState::Done)),
            "not asked"
        );
        assert!(
            !board.report(&a, status("t", "other:1", PullState::Done)),
            "other image"
        );
        assert!(
            !board.report(&a, status("u", "img:1", PullState::Done)),
            "other template"
        );
        assert!(board.report(&a, status("t", "img:1", PullState::Pulling)));
        assert!(board.report(&a, status("t", "img:1", PullState::Done)));
        assert!(
            !board.report(&a, status("t", "img:1", PullState::Pulling)),
            "a late progress report does not undo the result"
        );
        let entries = board.of(&"t".into());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[&a].state, PullState::Done);
        board.forget(&"t".into());
        assert!(board.of(&"t".into()).is_empty());
    }
}
