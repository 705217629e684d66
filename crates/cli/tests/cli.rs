//! The user and admin CLI, run as the real `streamspace` binary against a
//! real control plane (the binary too): `login` stores an API token in a
//! 0600 file that later commands use without `--server`/`--token`; JSON and
//! YAML output parse; templates apply create-or-replace; and the exit codes
//! scripts rely on (docs/CLI.md) come out for not-found, refused and
//! unauthorised requests, and for bad usage.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use streamspace_testkit::{ADMIN_PASSWORD, Api, ControlPlane, Mode};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_streamspace"))
}

/// A user of the CLI: their own config file, nothing from the
/// environment of the test run.
struct Shell {
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Shell {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self {
            // A directory that does not exist yet: login creates it.
            config: dir.path().join("streamspace").join("config.yaml"),
            _dir: dir,
        }
    }

    /// Runs `streamspace ARGS` with `stdin` piped in.
    async fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = Command::new(bin());
        command
            .args(args)
            .env("STREAMSPACE_CONFIG", &self.config)
            .env_remove("STREAMSPACE_TOKEN")
            .env_remove("STREAMSPACE_SERVER")
            .env("STREAMSPACE_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let input = stdin.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut child = command.spawn().expect("streamspace runs");
            if let Some(mut pipe) = child.stdin.take() {
                std::io::Write::write_all(&mut pipe, input.as_bytes()).expect("stdin");
            }
            child.wait_with_output().expect("streamspace ends")
        })
        .await
        .expect("joined")
    }

    /// Runs a command that must succeed; its standard output.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args, "").await;
        assert!(output.status.success(), "{args:?}: {}", describe(&output));
        text(&output.stdout)
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut with = args.to_vec();
        with.extend(["--output", "json"]);
        let out = self.ok(&with).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    async fn yaml(&self, args: &[&str]) -> Value {
        let mut with = args.to_vec();
        with.extend(["-o", "yaml"]);
        let out = self.ok(&with).await;
        serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not YAML ({e}): {out}"))
    }

    /// Runs a command that must fail with exit `code`; its standard error.
    async fn fails(&self, args: &[&str], code: i32) -> String {
        let output = self.run(args, "").await;
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            describe(&output)
        );
        text(&output.stderr)
    }

    async fn login(&self, cp: &ControlPlane, username: &str, password: &str) -> Output {
        let args = ["login", "--server", cp.url.as_str(), "--username", username];
        self.run(&args, &format!("{password}\n")).await
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// The mode bits of the file (and whether it exists).
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn login_stores_a_private_token_that_commands_use() -> anyhow::Result<()> {
    let cp = ControlPlane::start(bin(), Mode::Server, None).await?;
    let admin = Api::admin(&cp.url).await?;
    admin.create_user("alice", "alice-password").await?;
    let alice = Shell::new();

    // Not logged in yet: exit 5, and it says what to do.
    let stderr = alice.fails(&["sessions", "ls"], 5).await;
    assert!(stderr.contains("streamspace login"), "{stderr}");
    // A wrong password is refused (5) and stores nothing.
    let wrong = alice.login(&cp, "alice", "not-her-password").await;
    assert_eq!(wrong.status.code(), Some(5), "{}", describe(&wrong));
    assert!(!alice.config.exists());

    let output = alice.login(&cp, "alice", "alice-password").await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(mode(&alice.config), 0o600, "the token is the owner's alone");
    assert_eq!(mode(alice.config.parent().expect("dir")), 0o700);
    let stored: Value = serde_saphyr::from_str(&std::fs::read_to_string(&alice.config)?)?;
    assert_eq!(stored["server"], cp.url.as_str());
    let token = stored["token"].as_str().unwrap_or_default().to_owned();
    assert!(token.starts_with("ssp_"), "an API token: {stored}");

    // It is an API token of Alice's, listed under its name; the login it
    // was made with has ended.
    let mut as_token = Api::new(&cp.url);
    as_token.token = Some(token.clone());
    let tokens = as_token
        .expect(Method::GET, "/api/v1/users/me/tokens", None, StatusCode::OK)
        .await?;
    assert_eq!(tokens.as_array().map(Vec::len), Some(1), "{tokens}");
    assert!(
        tokens[0]["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("cli on ")
    );

    // Commands need neither --server nor --token now; JSON and YAML parse.
    assert_eq!(alice.json(&["sessions", "ls"]).await, json!([]));
    assert_eq!(
        alice
            .yaml(&["sessions", "ls", "--include-terminated"])
            .await,
        json!([])
    );
    assert_eq!(alice.json(&["templates", "ls"]).await, json!([]));
    let table = alice.ok(&["sessions", "ls"]).await;
    assert!(table.starts_with("ID  "), "{table}");

    // Exit codes: 3 not found, 4 refused (not an admin), 2 usage.
    let missing = "0190aaaa-0000-7000-8000-000000000000";
    let stderr = alice.fails(&["sessions", "get", missing], 3).await;
    assert!(stderr.contains("not found"), "{stderr}");
    alice.fails(&["sessions", "hibernate", missing], 3).await;
    alice
        .fails(&["templates", "get", "no-such-template"], 3)
        .await;
    let stderr = alice.fails(&["agents", "ls"], 4).await;
    assert!(stderr.contains("admin"), "{stderr}");
    alice.fails(&["users", "ls"], 4).await;
    alice.fails(&["sessions", "ls", "--all"], 4).await;
    alice.fails(&["sessions", "get"], 2).await;
    alice.fails(&["sessions", "ls", "--output", "xml"], 2).await;
    // A stored login is never sent to another server.
    let stderr = alice
        .fails(&["sessions", "ls", "--server", "http://127.0.0.1:9"], 5)
        .await;
    assert!(stderr.contains("stored login is for"), "{stderr}");
    // A bad --token is unauthorised (5).
    alice
        .fails(&["sessions", "ls", "--token", "ssp_not-a-token"], 5)
        .await;

    // Logging out revokes the token on the server and forgets it.
    alice.ok(&["logout"]).await;
    assert!(!alice.config.exists());
    let me = as_token.call(Method::GET, "/api/v1/users/me", None).await?;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    alice.fails(&["sessions", "ls"], 5).await;
    Ok(())
}

const TEMPLATE: &str = "\
name: notes
display_name: Notes
image: streamspace/desktop:local
ports:
  - {name: vnc, port: 5901, protocol: vnc}
";

#[tokio::test]
async fn an_admin_manages_users_templates_and_agents() -> anyhow::Result<()> {
    let cp = ControlPlane::start(bin(), Mode::Server, None).await?;
    let admin = Shell::new();
    let output = admin.login(&cp, "admin", ADMIN_PASSWORD).await;
    assert!(output.status.success(), "{}", describe(&output));

    // users create reads the password from standard input, never argv.
    let created = admin
        .run(&["users", "create", "bob", "-o", "json"], "bob-password\n")
        .await;
    assert!(created.status.success(), "{}", describe(&created));
    let bob: Value = serde_json::from_slice(&created.stdout)?;
    assert_eq!(
        (bob["username"].as_str(), bob["role"].as_str()),
        (Some("bob"), Some("user"))
    );
    Api::login(&cp.url, "bob", "bob-password").await?;
    let users = admin.yaml(&["users", "ls"]).await;
    let names: Vec<&str> = users
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["admin", "bob"]);
    // A name taken is refused (4); a too-short password is bad input (2).
    let taken = admin
        .run(&["users", "create", "bob"], "bob-password\n")
        .await;
    assert_eq!(taken.status.code(), Some(4), "{}", describe(&taken));
    let short = admin.run(&["users", "create", "carol"], "short\n").await;
    assert_eq!(short.status.code(), Some(2), "{}", describe(&short));

    // templates apply creates, then replaces by name.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("notes.yaml");
    std::fs::write(&file, TEMPLATE)?;
    let file = file.to_str().unwrap_or_default();
    let applied = admin.json(&["templates", "apply", "-f", file]).await;
    assert_eq!(applied["display_name"], "Notes");
    std::fs::write(file, TEMPLATE.replace("Notes", "Team notes"))?;
    let replaced = admin.json(&["templates", "apply", "-f", file]).await;
    assert_eq!(replaced["id"], applied["id"], "the same template, replaced");
    let got = admin.json(&["templates", "get", "notes"]).await;
    assert_eq!(got["display_name"], "Team notes");
    let table = admin.ok(&["templates", "ls"]).await;
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap_or_default()
            .starts_with("notes "),
        "{table}"
    );
    // A broken template names its field, exit 2.
    std::fs::write(file, "name: broken\nimage: ''\n")?;
    let stderr = admin.fails(&["templates", "apply", "-f", file], 2).await;
    assert!(stderr.contains("image"), "{stderr}");
    // The catalog commands use the stored login too.
    let exported = admin.ok(&["templates", "export"]).await;
    assert!(exported.contains("name: notes"), "{exported}");

    // No agents yet; draining an unknown one is not found.
    assert_eq!(admin.json(&["agents", "ls"]).await, json!([]));
    admin
        .fails(
            &["agents", "drain", "0190aaaa-0000-7000-8000-000000000000"],
            3,
        )
        .await;
    // With no agent to run it, a session cannot start: a plain error (1)
    // that says why.
    let stderr = admin.fails(&["sessions", "create", "notes"], 1).await;
    assert!(stderr.contains("503"), "{stderr}");
    Ok(())
}

/// An account with two-step verification: `login` asks for the code after
/// the password, and a wrong one stores nothing (exit 5).
#[tokio::test]
async fn login_asks_for_the_second_factor() -> anyhow::Result<()> {
    let cp = ControlPlane::start(bin(), Mode::Server, None).await?;
    let admin = Api::admin(&cp.url).await?;
    admin.create_user("alice", "alice-password").await?;
    let api = Api::login(&cp.url, "alice", "alice-password").await?;
    let recovery_codes = enrol_totp(&api).await?;
    let alice = Shell::new();
    let args = ["login", "--server", cp.url.as_str(), "--username", "alice"];

    let wrong = alice
        .run(&args, "alice-password\nabcd-efgh-ijkl-mnop\n")
        .await;
    assert_eq!(wrong.status.code(), Some(5), "{}", describe(&wrong));
    assert!(!alice.config.exists(), "a refused login stored a token");

    let input = format!("alice-password\n{}\n", recovery_codes[0]);
    let right = alice.run(&args, &input).await;
    assert!(right.status.success(), "{}", describe(&right));
    let sessions = alice.json(&["sessions", "ls"]).await;
    assert_eq!(sessions, json!([]), "the stored login works");
    Ok(())
}

/// Turns TOTP on for the caller (the enrolment code computed here, as an
/// authenticator app would); answers the recovery codes.
async fn enrol_totp(api: &Api) -> anyhow::Result<Vec<String>> {
    let started = api
        .expect(
            Method::POST,
            "/api/v1/users/me/mfa/totp",
            None,
            StatusCode::OK,
        )
        .await?;
    let secret = started["secret"].as_str().expect("the secret");
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(totp_rs::Secret::try_from_base32(secret)?.to_vec())
        .build()?;
    let body = json!({"code": totp.generate_current().to_string()});
    let confirmed = api
        .expect(
            Method::POST,
            "/api/v1/users/me/mfa/totp/confirm",
            Some(body),
            StatusCode::OK,
        )
        .await?;
    Ok(serde_json::from_value(confirmed["recovery_codes"].clone())?)
}
