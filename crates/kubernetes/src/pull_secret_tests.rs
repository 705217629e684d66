use super::*;
use crate::objects::{deployment, validate};
use crate::{KubernetesOptions, names};
use serde_json::{Value, json};
use streamspace_protocol::labels;

const SESSION: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
const SECRET: &str = "streamspace-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b-pull";

fn spec(image: &str) -> SessionSpec {
    SessionSpec::fixture(SESSION)
        .with_image(image)
        .with_registry_auth("robot", "s3cret:with-colon")
}

/// The Secret's `.dockerconfigjson`, parsed.
fn config_of(secret: &Secret) -> Value {
    let data = secret.data.as_ref().expect("data");
    serde_json::from_slice(&data[DOCKER_CONFIG_KEY].0).expect("JSON")
}

#[test]
fn the_secret_holds_credentials_for_the_images_registry_only() {
    let secret = pull_secret(
        &spec("registry.example.com:5000/team/desktop:1"),
        &"agent-7".into(),
        "streamspace",
    )
    .expect("a secret");
    assert_eq!(secret.metadata.name.as_deref(), Some(SECRET));
    assert_eq!(secret.metadata.namespace.as_deref(), Some("streamspace"));
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    assert_eq!(secret.immutable, Some(true));
    assert_eq!(secret.data.as_ref().map(BTreeMap::len), Some(1));
    let basic = STANDARD.encode("robot:s3cret:with-colon");
    assert_eq!(
        config_of(&secret),
        json!({"auths": {"registry.example.com:5000": {
            "username": "robot", "password": "s3cret:with-colon", "auth": basic,
        }}})
    );
}

#[test]
fn docker_hub_credentials_go_under_the_key_the_kubelet_matches() {
    for image in [
        "firefox:esr",
        "linuxserver/webtop:latest",
        "docker.io/library/debian",
    ] {
        let secret = pull_secret(&spec(image), &"agent-7".into(), "ns").expect("a secret");
        let config = config_of(&secret);
        let keys: Vec<&String> = config["auths"].as_object().expect("auths").keys().collect();
        assert_eq!(keys, ["https://index.docker.io/v1/"], "{image}");
    }
    // A registry's host is what an image names before its first '/'.
    let secret =
        pull_secret(&spec("GHCR.io/org/app:1"), &"agent-7".into(), "ns").expect("a secret");
    assert!(config_of(&secret)["auths"]["ghcr.io"].is_object());
}

#[test]
fn the_secret_is_labelled_as_the_sessions() {
    let secret = pull_secret(&spec("r.example.com/a:1"), &"agent-7".into(), "ns").expect("secret");
    let labels = secret.metadata.labels.expect("labels");
    assert_eq!(labels[names::MANAGED_BY], names::MANAGER);
    assert_eq!(labels[names::APP_NAME], "streamspace-pull-secret");
    assert_eq!(labels[labels::SESSION_ID], SESSION);
    assert_eq!(labels[labels::AGENT], "agent-7");
    assert_eq!(labels[labels::USER], "alice");
}

#[test]
fn no_credentials_no_secret() {
    let spec = SessionSpec::fixture(SESSION).with_image("r.example.com/a:1");
    assert!(pull_secret(&spec, &"agent-7".into(), "ns").is_none());
    assert!(pod_pull_secrets(&spec, &[], &[]).is_empty());
}

#[test]
fn the_pod_names_its_own_secret_first_then_the_agents_and_the_accounts() {
    let agent = ["mirror".to_owned()];
    let account = ["team".to_owned(), "mirror".to_owned()];
    assert_eq!(
        pod_pull_secrets(&spec("r.example.com/a:1"), &agent, &account),
        [SECRET, "mirror", "team"]
    );
    let plain = SessionSpec::fixture(SESSION);
    assert_eq!(
        pod_pull_secrets(&plain, &agent, &account),
        ["mirror", "team"]
    );

    let options = KubernetesOptions {
        image_pull_secrets: agent.to_vec(),
        ..KubernetesOptions::default()
    };
    let spec = spec("r.example.com/a:1");
    let confinement = validate(&spec, &options).expect("valid");
    let made = deployment(&spec, &confinement, &"agent-7".into(), &options, &account);
    assert!(names_pull_secret(&made, &spec.session_id));
    let refs: Vec<String> = (made.spec.template.spec.as_ref())
        .and_then(|pod| pod.image_pull_secrets.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(refs, [SECRET, "mirror", "team"]);

    let without = deployment(&plain, &confinement, &"agent-7".into(), &options, &[]);
    assert!(!names_pull_secret(&without, &plain.session_id));
}
