//! Image pulls against a real registry: Debian's `docker-registry` (the
//! CNCF distribution registry) on a loopback port with htpasswd
//! authentication, the real agent pulling through the real Docker engine.
//! An image only in that registry goes `Pulling` (with rising percentages
//! in its events) → `Running`; wrong credentials, an unknown image and an
//! unreachable registry fail the session with why; a pre-pull puts an
//! image on the agent.

use crate::{RUNNING_LIMIT, bin};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use streamspace_testkit::docker::Cleanup;
use streamspace_testkit::{AgentProcess, Api, ControlPlane, Mode, Options, eventually};
use tempfile::TempDir;

const BASE: &str = "streamspace/echo:local";
const USER: &str = "tester";
const PASSWORD: &str = "correct-horse";
/// A layer of random bytes (which no compression shrinks) on top of the
/// echo image, so the pull takes long enough for several reports.
const BLOB_BYTES: usize = 48 << 20;

/// A registry on 127.0.0.1 that wants `USER`/`PASSWORD`, removed (with
/// its storage) when dropped.
struct Registry {
    host: String,
    process: tokio::process::Child,
    dir: TempDir,
}

impl Registry {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let host = format!("127.0.0.1:{port}");
        let htpasswd = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]))?;
        std::fs::write(dir.path().join("htpasswd"), htpasswd.trim())?;
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: {host}\nauth:\n  htpasswd:\n    realm: streamspace-test\n    path: {auth}\n",
            data = dir.path().join("data").display(),
            auth = dir.path().join("htpasswd").display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let process = tokio::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("docker-registry: {e} (scripts/install-deps.sh installs it)")
            })?;
        let registry = Registry { host, process, dir };
        let api = Api::new(&format!("http://{}", registry.host).parse()?);
        eventually(Duration::from_secs(20), "the registry answers", || async {
            let answered = api.call(Method::GET, "/v2/", None).await.ok();
            let status = answered.map(|a| a.status);
            Ok((status == Some(StatusCode::UNAUTHORIZED)).then_some(()))
        })
        .await?;
        Ok(registry)
    }

    /// Pushes `local` as `name` (`test/app:1`); returns the reference.
    fn push(&self, local: &str, name: &str) -> anyhow::Result<String> {
        let reference = format!("{}/{name}", self.host);
        let config = self.dir.path().join("docker-cli");
        let docker = || {
            let mut command = Command::new("docker");
            // The test's login stays out of the machine's ~/.docker.
            command.env("DOCKER_CONFIG", &config);
            command
        };
        run(docker().args(["tag", local, &reference]))?;
        run(docker().args(["login", &self.host, "-u", USER, "-p", PASSWORD]))?;
        run(docker().args(["push", &reference]))?;
        run(docker().args(["rmi", &reference]))?;
        Ok(reference)
    }

    /// A Docker `config.json` with this registry's credentials, mode 0600.
    fn agent_auth_file(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join("agent-auth.json");
        let entry = json!({"username": USER, "password": PASSWORD});
        let text = json!({"auths": {format!("http://{}", self.host): entry}});
        std::fs::write(&path, text.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(path)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
    }
}

/// Image tags removed when the test ends, however it ends.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .map_err(|e| anyhow::anyhow!("{command:?}: {e} (scripts/install-deps.sh installs it)"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The echo image plus a layer of random bytes, tagged `tag`.
fn build_big_image(tag: &str, dir: &Path) -> anyhow::Result<()> {
    streamspace_testkit::docker::require_image(BASE)?;
    let blob = dir.join("blob");
    let mut random = vec![0u8; BLOB_BYTES];
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    std::io::Read::read_exact(&mut urandom, &mut random)?;
    std::fs::write(&blob, random)?;
    let container = run(Command::new("docker").args(["create", BASE]))?;
    let container = container.trim();
    let built = run(Command::new("docker")
        .arg("cp")
        .arg(&blob)
        .arg(format!("{container}:/blob")))
    .and_then(|_| run(Command::new("docker").args(["commit", container, tag])));
    let _ = run(Command::new("docker").args(["rm", "-f", container]));
    built.map(|_| ())
}

fn echo_template(name: &str, image: &str, auth: Option<Value>) -> Value {
    let mut template = json!({
        "name": name,
        "image": image,
        "ports": [{"name": "vnc", "port": 5900, "protocol": "vnc"}],
        "env": {"MODE": "echo"},
        "resources": {"cpu": "250m", "memory": "128Mi"},
        "platforms": ["docker"]
    });
    if let Some(auth) = auth {
        template["registry_auth"] = auth;
    }
    template
}

async fn failure_of(admin: &Api, template: &str) -> anyhow::Result<String> {
    let session = admin.create_session(json!({"template": template})).await?;
    let id = session["id"].as_str().unwrap_or_default();
    let failed = admin.wait_for_phase(id, "Failed", RUNNING_LIMIT).await?;
    Ok(failed["message"].as_str().unwrap_or_default().to_owned())
}

/// The percentages of a session's `Pulling` events, oldest first.
async fn pull_percentages(admin: &Api, id: &str) -> anyhow::Result<Vec<u32>> {
    let events = admin
        .expect(
            Method::GET,
            &format!("/api/v1/sessions/{id}/events"),
            None,
            StatusCode::OK,
        )
        .await?;
    let percent = |message: &str| -> Option<u32> {
        let (_, rest) = message.rsplit_once(": ")?;
        rest.split('%').next()?.parse().ok()
    };
    Ok(events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["phase"] == "Pulling")
        .filter_map(|e| percent(e["message"].as_str()?))
        .collect())
}

#[tokio::test]
async fn images_are_pulled_from_a_private_registry_with_progress_and_failures_say_why()
-> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let source = format!(
        "streamspace-test/pull-big:{}",
        registry.host.replace([':', '.'], "-")
    );
    let mut images = Images(vec![source.clone()]);
    build_big_image(&source, registry.dir.path())?;
    let app = registry.push(&source, "test/app:1")?;
    let other = registry.push(&source, "test/other:1")?;
    let pre = registry.push(&source, "test/pre:1")?;
    images.0.extend([app.clone(), other.clone(), pre.clone()]);
    // Only the echo image's layer stays here: the agent must pull the rest.
    run(Command::new("docker").args(["rmi", &source]))?;

    let cp = ControlPlane::start(bin(), Mode::Server, None).await?;
    let admin = Api::admin(&cp.url).await?;
    let token = admin.enrollment_token().await?;
    let auth_file = registry.agent_auth_file()?;
    let options = Options {
        args: vec![
            "--registry-auth".into(),
            auth_file.display().to_string(),
            "--pull-report-interval-ms".into(),
            "20".into(),
        ],
        ..Options::default()
    };
    let agent = AgentProcess::start_with(bin(), &cp.url, &token, "pull-agent", options).await?;
    let agent_id = admin
        .wait_for_agent("pull-agent", Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
    let _cleanup = Cleanup(vec![agent_id.clone()]);

    // The template's credentials: Pulling with rising percentages, then Running.
    let good = json!({"username": USER, "password": PASSWORD});
    let created = admin
        .create_template(echo_template("private", &app, Some(good)))
        .await?;
    assert_eq!(
        created["registry_auth"],
        json!({"username": USER}),
        "write-only"
    );
    let session = admin.create_session(json!({"template": "private"})).await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    admin
        .wait_for_phase(&id, "Running", RUNNING_LIMIT)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
    let seen = pull_percentages(&admin, &id).await?;
    let distinct: std::collections::BTreeSet<u32> = seen.iter().copied().collect();
    assert!(distinct.len() >= 3, "several progress reports: {seen:?}");
    assert!(seen.last() > seen.first(), "rising: {seen:?}");
    assert!(seen.iter().all(|p| *p <= 100), "{seen:?}");

    // Wrong credentials on the template win over the agent's good ones.
    let bad = json!({"username": USER, "password": "wrong"});
    admin
        .create_template(echo_template("wrong", &other, Some(bad)))
        .await?;
    let message = failure_of(&admin, "wrong").await?;
    assert!(
        message.starts_with(&format!(
            "the registry refused the credentials for {}",
            registry.host
        )),
        "{message}"
    );
    assert!(message.contains("the template's"), "{message}");
    assert!(!message.contains("wrong\""), "no password: {message}");

    // An image the registry does not have (the agent's credentials).
    let ghost = format!("{}/test/ghost:1", registry.host);
    admin
        .create_template(echo_template("ghost", &ghost, None))
        .await?;
    let message = failure_of(&admin, "ghost").await?;
    assert!(
        message.starts_with(&format!("image {ghost} not found in {}", registry.host)),
        "{message}"
    );

    // A registry nobody listens for.
    admin
        .create_template(echo_template("nowhere", "127.0.0.1:1/test/app:1", None))
        .await?;
    let message = failure_of(&admin, "nowhere").await?;
    assert!(
        message.starts_with("cannot reach registry 127.0.0.1:1 to pull 127.0.0.1:1/test/app:1"),
        "{message}"
    );

    // Pre-pull, with the agent's credentials.
    admin
        .create_template(echo_template("pre", &pre, None))
        .await?;
    assert!(
        run(Command::new("docker").args(["image", "inspect", &pre])).is_err(),
        "not here before"
    );
    let asked = admin
        .expect(
            Method::POST,
            "/api/v1/templates/pre/prepull",
            None,
            StatusCode::ACCEPTED,
        )
        .await?;
    assert_eq!(asked["agents"][0]["agent_id"], agent_id.as_str(), "{asked}");
    assert_eq!(asked["agents"][0]["state"], "requested", "{asked}");
    let done = eventually(Duration::from_secs(60), "the pre-pull ends", || async {
        let status = admin
            .expect(
                Method::GET,
                "/api/v1/templates/pre/prepull",
                None,
                StatusCode::OK,
            )
            .await?;
        let state = status["agents"][0]["state"].clone();
        Ok((state == "done" || state == "failed").then_some(status))
    })
    .await?;
    assert_eq!(done["agents"][0]["state"], "done", "{done}");
    assert_eq!(done["agents"][0]["name"], "pull-agent", "{done}");
    run(Command::new("docker").args(["image", "inspect", &pre]))?;

    // Users may not ask for pre-pulls.
    let user = admin.create_user("puller", "a-long-password-1").await?;
    assert_eq!(user["username"], "puller");
    let as_user = Api::login(&cp.url, "puller", "a-long-password-1").await?;
    as_user
        .refused(
            Method::POST,
            "/api/v1/templates/pre/prepull",
            json!({}),
            StatusCode::FORBIDDEN,
        )
        .await?;
    let seen_by_user = as_user
        .expect(
            Method::GET,
            "/api/v1/templates/private",
            None,
            StatusCode::OK,
        )
        .await?;
    assert!(
        seen_by_user.get("registry_auth").is_none(),
        "{seen_by_user}"
    );
    Ok(())
}
