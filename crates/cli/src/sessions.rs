//! `streamspace sessions`: list, start (with live progress), inspect,
//! hibernate, wake, terminate and open sessions, and read their console
//! output, as the logged-in user (`--all` for an admin's view of everyone's).

use crate::client::{Client, checked, segment};
use crate::control_plane::ControlPlaneArgs;
use crate::failure::{Failure, REFUSED, USAGE};
use crate::output::{Column, OutputArg, col, print, show};
use crate::progress;
use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use streamspace_protocol::SessionId;

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// List your sessions (`--all`: everyone's, for admins).
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Start a session from a template and follow it until it runs.
    Create(CreateArgs),
    /// Show one session.
    Get(OneArgs),
    /// Hibernate a session: it stops, its home stays.
    Hibernate(OneArgs),
    /// Wake a hibernated session.
    Wake(OneArgs),
    /// Terminate a session.
    #[command(alias = "delete")]
    Rm(RemoveArgs),
    /// Print a session's console output.
    Logs(LogsArgs),
    /// Open a session: a native VNC viewer through a local tunnel, or the
    /// browser.
    Open(OpenArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Everyone's sessions (admins only).
    #[arg(long)]
    all: bool,
    /// Terminated sessions too.
    #[arg(long)]
    include_terminated: bool,
    #[command(flatten)]
    output: OutputArg,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The template's name or id.
    template: String,
    /// `docker` or `kubernetes`, if the template allows both.
    #[arg(long)]
    platform: Option<String>,
    /// Run on this agent.
    #[arg(long)]
    agent_id: Option<String>,
    /// Only agents with this label (repeatable): `--selector region=eu`.
    #[arg(long = "selector", value_parser = key_value)]
    selectors: Vec<(String, String)>,
    /// An environment variable the template lets users set (repeatable).
    #[arg(long = "env", short = 'e', value_parser = key_value)]
    env: Vec<(String, String)>,
    /// CPU, e.g. "2" or "1500m", up to the template's maximum.
    #[arg(long)]
    cpu: Option<String>,
    /// Memory, e.g. "2Gi", up to the template's maximum.
    #[arg(long)]
    memory: Option<String>,
    /// Hibernate after this long idle ("0" = never), if the template allows.
    #[arg(long)]
    idle_timeout: Option<String>,
    /// Answer as soon as the session is placed, without following it.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for `Running`.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    output: OutputArg,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

#[derive(Args, Debug)]
pub struct OneArgs {
    session_id: SessionId,
    #[command(flatten)]
    output: OutputArg,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    session_id: SessionId,
    /// End it at once without its agent, for an agent gone for good (admins).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    session_id: SessionId,
    /// Keep printing new output until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<u32>,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

#[derive(Args, Debug)]
pub struct OpenArgs {
    session_id: SessionId,
    /// The local address of the VNC tunnel (default: a free loopback port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Open the web UI's viewer in the browser instead of a VNC viewer.
    #[arg(long)]
    browser: bool,
    /// The VNC viewer to run, given `HOST::PORT` (default: vncviewer).
    #[arg(long, env = "STREAMSPACE_VNC_VIEWER")]
    viewer: Option<String>,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

const COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("TEMPLATE", "template"),
    col("PHASE", "phase"),
    col("STATE", "state"),
    col("AGENT", "agent_name"),
    col("CPU", "resources.cpu"),
    col("MEMORY", "resources.memory"),
    col("CREATED", "created_at"),
];

/// Admins see whose each session is.
const ALL_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("USER", "user"),
    col("TEMPLATE", "template"),
    col("PHASE", "phase"),
    col("STATE", "state"),
    col("AGENT", "agent_name"),
    col("CREATED", "created_at"),
];

pub async fn run(command: SessionsCommand) -> anyhow::Result<()> {
    match command {
        SessionsCommand::Ls(args) => list(args).await,
        SessionsCommand::Create(args) => create(args).await,
        SessionsCommand::Get(args) => {
            let session = args.server.client()?.get(&path(&args.session_id)).await?;
            show(args.output.output, &session, COLUMNS)
        }
        SessionsCommand::Hibernate(args) => set_state(args, "hibernated").await,
        SessionsCommand::Wake(args) => set_state(args, "running").await,
        SessionsCommand::Rm(args) => remove(args).await,
        SessionsCommand::Logs(args) => logs(args).await,
        SessionsCommand::Open(args) => open(args).await,
    }
}

fn path(id: &SessionId) -> String {
    format!("/api/v1/sessions/{}", segment(id.as_str()))
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let query = format!(
        "/api/v1/sessions?all={}&include_terminated={}",
        args.all, args.include_terminated
    );
    let sessions = args.server.client()?.get(&query).await?;
    let columns = if args.all { ALL_COLUMNS } else { COLUMNS };
    show(args.output.output, &sessions, columns)
}

/// `NAME=VALUE`.
fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

fn create_body(args: &CreateArgs) -> Value {
    let mut body = Map::new();
    body.insert("template".into(), json!(args.template));
    let optional = [
        ("platform", &args.platform),
        ("agent_id", &args.agent_id),
        ("idle_timeout", &args.idle_timeout),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            body.insert(key.into(), json!(value));
        }
    }
    let pairs = |list: &[(String, String)]| -> Map<String, Value> {
        list.iter().map(|(k, v)| (k.clone(), json!(v))).collect()
    };
    if !args.selectors.is_empty() {
        body.insert(
            "agent_selector".into(),
            Value::Object(pairs(&args.selectors)),
        );
    }
    if !args.env.is_empty() {
        body.insert("env".into(), Value::Object(pairs(&args.env)));
    }
    if args.cpu.is_some() || args.memory.is_some() {
        let mut resources = Map::new();
        if let Some(cpu) = &args.cpu {
            resources.insert("cpu".into(), json!(cpu));
        }
        if let Some(memory) = &args.memory {
            resources.insert("memory".into(), json!(memory));
        }
        body.insert("resources".into(), Value::Object(resources));
    }
    Value::Object(body)
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    // Subscribed before the session exists, so none of its changes is missed.
    let events = match args.no_wait {
        true => None,
        false => Some(progress::subscribe(&client).await),
    };
    let body = create_body(&args);
    let session = client
        .call(Method::POST, "/api/v1/sessions", Some(&body))
        .await?;
    let Some(events) = events else {
        return show(args.output.output, &session, COLUMNS);
    };
    eprintln!(
        "Session {} ({}) placed on {}:",
        session["id"].as_str().unwrap_or_default(),
        session["template"].as_str().unwrap_or_default(),
        session["agent_name"].as_str().unwrap_or("an agent")
    );
    let running = progress::until_running(&client, events, session, args.timeout).await?;
    show(args.output.output, &running, COLUMNS)
}

async fn set_state(args: OneArgs, state: &str) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let body = json!({"state": state});
    let path = format!("{}/state", path(&args.session_id));
    let session = client.call(Method::PUT, &path, Some(&body)).await?;
    show(args.output.output, &session, COLUMNS)
}

async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let mut path = path(&args.session_id);
    if args.force {
        path.push_str("?force=true");
    }
    client.call(Method::DELETE, &path, None).await?;
    eprintln!("Session {} is terminating.", args.session_id);
    Ok(())
}

async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let mut path = format!("{}/logs?follow={}", path(&args.session_id), args.follow);
    if let Some(tail) = args.tail {
        path.push_str(&format!("&tail={tail}"));
    }
    let request = client.request(Method::GET, &path)?;
    let mut response = checked(client.send(request).await?).await?;
    let stop = crate::shutdown::on_signal();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk.context("the log stream broke")?,
            _ = stop.cancelled() => return Ok(()),
        };
        match chunk {
            Some(bytes) => print(&String::from_utf8_lossy(&bytes))?,
            None => return Ok(()),
        }
    }
}

async fn open(args: OpenArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let session = crate::connect::check_session(&client, &args.session_id).await?;
    if session["phase"] != "Running" {
        let phase = session["phase"].as_str().unwrap_or("not running");
        let hint = match phase {
            "Hibernated" => format!(
                ": wake it first (streamspace sessions wake {})",
                args.session_id
            ),
            _ => String::new(),
        };
        return Err(Failure::new(REFUSED, format!("the session is {phase}{hint}")).into());
    }
    let vnc = session["ports"][0]["protocol"] == "vnc";
    if args.browser || !vnc {
        return open_in_browser(&client, &session, &args.session_id);
    }
    open_in_viewer(&client, &args).await
}

/// The browser URL of a session: its web app, or the web UI's viewer.
fn browser_url(client: &Client, session: &Value, id: &SessionId) -> anyhow::Result<url::Url> {
    let path = match session["app_url"].as_str() {
        Some(app) => app.to_owned(),
        None => format!("/sessions/{}", segment(id.as_str())),
    };
    Ok(client.server.join(&path)?)
}

fn open_in_browser(client: &Client, session: &Value, id: &SessionId) -> anyhow::Result<()> {
    let url = browser_url(client, session, id)?;
    println!("{url}");
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let opened = std::process::Command::new(opener)
        .arg(url.as_str())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !opened {
        eprintln!("Open that URL in your browser (signed in to StreamSpace).");
    }
    Ok(())
}

/// Starts the tunnel on a local port, runs the VNC viewer at it, and
/// closes the tunnel when the viewer exits.
async fn open_in_viewer(client: &Client, args: &OpenArgs) -> anyhow::Result<()> {
    let listener = crate::connect::listen(args.listen).await?;
    let local = listener.local_addr()?;
    let target = format!("{}::{}", local.ip(), local.port());
    let stop = crate::shutdown::on_signal();
    let tunnel = {
        let (client, id, stop) = (client.clone(), args.session_id.clone(), stop.clone());
        tokio::spawn(async move { crate::connect::serve(listener, &client, &id, stop).await })
    };
    let viewer = args.viewer.clone().unwrap_or_else(|| "vncviewer".into());
    let mut words = viewer.split_whitespace();
    let program = words
        .next()
        .ok_or_else(|| Failure::new(USAGE, "STREAMSPACE_VNC_VIEWER is empty"))?;
    let spawned = tokio::process::Command::new(program)
        .args(words)
        .arg(&target)
        .kill_on_drop(true)
        .spawn();
    let result = match spawned {
        Ok(mut child) => {
            eprintln!(
                "Session {} opened in {program} (tunnel at {target}).",
                args.session_id
            );
            tokio::select! {
                status = child.wait() => status.map(|_| ()).context("the VNC viewer failed"),
                _ = stop.cancelled() => Ok(()),
            }
        }
        Err(err) => {
            eprintln!(
                "cannot run the VNC viewer {program:?} ({err}): set STREAMSPACE_VNC_VIEWER, \
                 or point any VNC client at {target}; Ctrl-C ends the tunnel"
            );
            println!("{target}");
            stop.cancelled().await;
            Ok(())
        }
    };
    stop.cancel();
    let _ = tunnel.await;
    result
}
