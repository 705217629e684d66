use super::*;
use crate::store::{AuditEntry, NewSession, Role, TemplateWrite};
use crate::template::TemplateInput;
use crate::vault::Vault;
use std::sync::Arc;
use streamspace_protocol::{AgentId, CommandId, DesiredState, Phase, UserId};

const LICENSE: &str = "licence-s3cret-4711";
const PASSWORD: &str = "registry-pa55word-0815";

/// A store sealing with the key in `dir` (made there on first use).
async fn store(url: &str, dir: &std::path::Path) -> Store {
    let vault = Vault::load(dir, None).expect("the key");
    let store = Store::connect(url).await.expect("store");
    store.with_vault(Arc::new(vault))
}

fn template(name: &str) -> TemplateSpec {
    let input: TemplateInput = serde_json::from_value(serde_json::json!({
        "name": name, "image": "registry.example/app:1",
        "env": {"LANG": "C.UTF-8"}, "secret_env": {"LICENSE": LICENSE},
        "registry_auth": {"username": "robot", "password": PASSWORD},
    }))
    .expect("input");
    input.validate().expect("valid")
}

/// A spec as `TemplateSpec::session_spec` makes it: the secret variable
/// named, registry credentials set.
fn session_spec(template_id: &TemplateId) -> SessionSpec {
    let mut spec = SessionSpec::fixture(SessionId::new())
        .with_env("LANG", "C.UTF-8")
        .with_env("LICENSE", LICENSE);
    spec.secret_env_keys.insert("LICENSE".into());
    spec.template_id = template_id.clone();
    spec.registry_auth = Some(RegistryAuth {
        username: "robot".into(),
        password: PASSWORD.into(),
    });
    spec
}

async fn alice(store: &Store) -> crate::store::User {
    let user = store.create_user("alice", "h", Role::User).await;
    user.expect("user")
}

/// Alice's session of the template `template_id` on agent `a1`.
fn new_session(user_id: &UserId, template_id: &TemplateId, spec: &SessionSpec) -> NewSession {
    NewSession {
        user_id: user_id.clone(),
        template_id: template_id.clone(),
        template_name: "one".into(),
        agent_id: "a1".into(),
        platform: "docker".into(),
        spec: spec.clone(),
        idle_timeout_ms: None,
    }
}

fn start(spec: &SessionSpec) -> Command {
    Command {
        id: CommandId::new(),
        session_id: spec.session_id.clone(),
        action: Action::Start {
            spec: Box::new(spec.clone()),
        },
        trace_parent: None,
    }
}

/// Every text column of `table`'s rows, concatenated: what a dump shows.
async fn dump(store: &Store, table: &str, columns: &str) -> String {
    let rows = sqlx::query(super::super::sql(format!("SELECT {columns} FROM {table}")))
        .fetch_all(store.pool())
        .await
        .expect("rows");
    let mut text = String::new();
    for row in rows {
        for i in 0..columns.split(',').count() {
            let value: Option<String> = row.try_get(i).expect("text");
            text.push_str(&value.unwrap_or_default());
            text.push('\n');
        }
    }
    text
}

/// Copies the sealed secrets of one row (a table and an id) onto another,
/// as someone who can write to the database would.
async fn copy_secrets(store: &Store, from: (&str, &str), to: (&str, &str)) {
    let update = format!(
        "UPDATE {} SET secrets = (SELECT secrets FROM {} WHERE id = $1) WHERE id = $2",
        to.0, from.0
    );
    let done = sqlx::query(super::super::sql(update))
        .bind(from.1)
        .bind(to.1)
        .execute(store.pool())
        .await
        .expect("copied");
    assert_eq!(done.rows_affected(), 1);
}

fn assert_no_secret(dump: &str) {
    assert!(!dump.is_empty());
    assert!(
        !dump.contains(LICENSE) && !dump.contains(PASSWORD),
        "a secret in clear: {dump}"
    );
}

fn assert_plain_start(command: &Command) {
    let Action::Start { spec } = &command.action else {
        panic!("not a start: {command:?}");
    };
    assert_eq!(spec.env["LICENSE"], LICENSE);
    assert_eq!(spec.env["LANG"], "C.UTF-8");
    assert!(spec.secret_env_keys.contains("LICENSE"));
    let auth = spec.registry_auth.as_ref().expect("credentials");
    assert_eq!(
        (auth.username.as_str(), auth.password.as_str()),
        ("robot", PASSWORD)
    );
}

/// A template's secrets never reach its row in clear, however it is
/// written (created, replaced, imported); read back, they are whole.
async fn template_secrets_are_sealed_in_their_row(url: &str) {
    let keys = tempfile::tempdir().expect("dir");
    let store = store(url, keys.path()).await;
    let created = store
        .create_template(&template("one"))
        .await
        .expect("create");
    let replaced = store.update_template(&created.id, &template("one")).await;
    assert!(replaced.expect("update").is_some());
    let imported = template("two");
    let write = TemplateWrite {
        id: None,
        spec: &imported,
    };
    assert!(store.write_templates(&[write]).await.expect("import"));

    let rows = dump(&store, "templates", "spec, secrets").await;
    assert_no_secret(&rows);
    assert!(
        rows.contains("robot") && rows.contains("C.UTF-8"),
        "the rest stays readable"
    );
    for record in store.list_templates().await.expect("list") {
        assert_eq!(record.spec.secret_env.values()["LICENSE"], LICENSE);
        let auth = record.spec.registry_auth.expect("credentials");
        assert_eq!(auth.password.as_deref(), Some(PASSWORD));
    }
}

/// The copies in a session's spec and its start commands are sealed too,
/// on every path that stores them, and come back whole for the agent.
async fn session_and_command_secrets_are_sealed(url: &str) {
    let keys = tempfile::tempdir().expect("dir");
    let store = store(url, keys.path()).await;
    let user = alice(&store).await;
    let template = store
        .create_template(&template("one"))
        .await
        .expect("template");
    let spec = session_spec(&template.id);
    let agent: AgentId = "a1".into();
    let new = new_session(&user.id, &template.id, &spec);
    let session = store
        .create_session(
            &new,
            &start(&spec),
            &AuditEntry::new("test", "created"),
            None,
        )
        .await
        .expect("session");
    assert_eq!(session.spec, spec, "read back whole");
    // The reconciler's retry, and a state change that starts it again.
    store
        .enqueue_command(&agent, &start(&spec))
        .await
        .expect("retry");
    let seen = (DesiredState::Running, Phase::Pending);
    let again = start(&spec);
    let changed = store.set_desired_state(
        &session.id,
        seen,
        DesiredState::Running,
        Phase::Starting,
        Some((&agent, &again)),
    );
    assert!(changed.await.expect("change").is_some());
    // An orphan adopted after a restore.
    let mut orphan = new.clone();
    orphan.spec = SessionSpec {
        session_id: SessionId::new(),
        ..spec.clone()
    };
    let adopted = store.adopt_session(&orphan, DesiredState::Running, Phase::Running, "found");
    assert_eq!(adopted.await.expect("adopt").spec, orphan.spec);

    assert_no_secret(&dump(&store, "sessions", "spec, secrets").await);
    assert_no_secret(&dump(&store, "commands", "payload, secrets").await);

    let open = store.open_commands(&agent).await.expect("open");
    assert_eq!(open.len(), 1, "the newest supersedes the others");
    assert_plain_start(&open[0].command);
    let pending = store.pending_command(&again.id).await.expect("read");
    assert_plain_start(&pending.expect("pending").command);
    let latest = store.latest_command(&session.id).await.expect("read");
    assert_plain_start(&latest.expect("latest").command);
    let listed = store
        .list_sessions(Some(&user.id), false)
        .await
        .expect("list");
    assert!(listed.iter().all(|s| s.spec.env["LICENSE"] == LICENSE));
}

/// A sealed value is bound to its row: copied onto another template,
/// session or command, it does not open, and the error says what to do.
async fn a_sealed_value_opens_only_in_its_own_row(url: &str) {
    let keys = tempfile::tempdir().expect("dir");
    let store = store(url, keys.path()).await;
    let one = store.create_template(&template("one")).await.expect("one");
    let mut plain = template("two");
    plain.secret_env = SecretEnv::default();
    plain.registry_auth = None;
    let two = store.create_template(&plain).await.expect("two");
    copy_secrets(
        &store,
        ("templates", one.id.as_str()),
        ("templates", two.id.as_str()),
    )
    .await;
    assert!(
        store
            .get_template(&one.id)
            .await
            .expect("its own")
            .is_some()
    );
    let err = store.get_template(&two.id).await.expect_err("refused");
    assert!(matches!(err, StoreError::Sealed { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(two.id.as_str()) && message.contains("PUT /api/v1/templates"),
        "{message}"
    );
    assert!(!message.contains(LICENSE), "{message}");

    // A session's sealed secrets copied onto a start command of its own.
    let user = alice(&store).await;
    let spec = session_spec(&one.id);
    let new = new_session(&user.id, &one.id, &spec);
    let command = start(&spec);
    let session = store
        .create_session(&new, &command, &AuditEntry::new("test", "created"), None)
        .await
        .expect("session");
    copy_secrets(
        &store,
        ("sessions", session.id.as_str()),
        ("commands", command.id.as_str()),
    )
    .await;
    let err = store
        .open_commands(&"a1".into())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("terminate the session"), "{err}");
}

/// A replica with another key refuses to open what it cannot, naming the
/// key file to use, instead of sending agents empty secrets.
async fn another_key_names_the_file_to_share(url: &str) {
    let (first, second) = (tempfile::tempdir(), tempfile::tempdir());
    let (first, second) = (first.expect("dir"), second.expect("dir"));
    let one = store(url, first.path()).await;
    let created = one.create_template(&template("one")).await.expect("create");
    let other = store(url, second.path()).await;
    let err = other.get_template(&created.id).await.expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("sealed under key") && message.contains("mfa-key"),
        "{message}"
    );
    assert!(
        other.list_templates().await.is_err(),
        "never silently empty"
    );
    let keyless = Store::connect(url).await.expect("store");
    let err = keyless
        .get_template(&created.id)
        .await
        .expect_err("refused");
    assert!(matches!(err, StoreError::NoVault(_)), "{err}");
    let refused = keyless.create_template(&template("two")).await;
    assert!(
        matches!(refused, Err(StoreError::NoVault(_))),
        "nothing in clear"
    );
}

/// Rows an older release wrote, with their secrets in clear in the JSON,
/// still read (no key needed), and are sealed at the next start.
async fn legacy_rows_in_clear_still_read_and_get_sealed(url: &str) {
    let keys = tempfile::tempdir().expect("dir");
    let store = store(url, keys.path()).await;
    let user = alice(&store).await;
    let template_spec = template("one");
    let template = store
        .create_template(&template_spec)
        .await
        .expect("template");
    let spec = session_spec(&template.id);
    let command = start(&spec);
    let new = new_session(&user.id, &template.id, &spec);
    let session = store
        .create_session(&new, &command, &AuditEntry::new("test", "created"), None)
        .await
        .expect("session");
    // As the previous release stored them: everything in the JSON.
    for (table, column, json, id) in [
        (
            "templates",
            "spec",
            to_json(&template_spec),
            template.id.as_str(),
        ),
        ("sessions", "spec", to_json(&spec), session.id.as_str()),
        (
            "commands",
            "payload",
            to_json(&command),
            command.id.as_str(),
        ),
    ] {
        let update = format!("UPDATE {table} SET {column} = $1, secrets = NULL WHERE id = $2");
        sqlx::query(super::super::sql(update))
            .bind(&json)
            .bind(id)
            .execute(store.pool())
            .await
            .expect("legacy row");
        assert!(json.contains(PASSWORD), "{table} in clear: {json}");
    }

    let keyless = Store::connect(url).await.expect("store");
    let read = keyless.get_template(&template.id).await.expect("read");
    assert_eq!(read.expect("template").spec, template_spec);
    let legacy = keyless.get_session(&session.id).await.expect("read");
    assert_eq!(legacy.expect("session").spec.env["LICENSE"], LICENSE);
    let open = keyless.open_commands(&"a1".into()).await.expect("read");
    let Action::Start { spec: sent } = &open[0].command.action else {
        panic!("not a start");
    };
    assert_eq!(sent.env["LICENSE"], LICENSE, "the agent still gets it");

    assert_eq!(store.seal_legacy_secrets().await.expect("sealed"), 3);
    assert_no_secret(&dump(&store, "templates", "spec, secrets").await);
    assert_no_secret(&dump(&store, "sessions", "spec, secrets").await);
    assert_no_secret(&dump(&store, "commands", "payload, secrets").await);
    let read = store.get_template(&template.id).await.expect("read");
    assert_eq!(read.expect("template").spec, template_spec);
    let open = store.open_commands(&"a1".into()).await.expect("read");
    assert_plain_start(&open[0].command);
    let again = store.get_session(&session.id).await.expect("read");
    assert_eq!(again.expect("session").spec, spec);
    assert_eq!(store.seal_legacy_secrets().await.expect("again"), 0);
}

on_both_engines!(
    template_secrets_are_sealed_in_their_row,
    session_and_command_secrets_are_sealed,
    a_sealed_value_opens_only_in_its_own_row,
    another_key_names_the_file_to_share,
    legacy_rows_in_clear_still_read_and_get_sealed,
);
